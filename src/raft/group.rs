//! A single-member, in-memory replication group.

/// Position of an entry in a group's log, starting at 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LogIndex(pub u64);

/// What `apply` may know besides the command: where it sits in the log and the time the
/// proposer stamped on it. Machines must not read a clock of their own.
#[derive(Clone, Copy, Debug)]
pub struct ApplyMeta {
    pub index: LogIndex,
    /// Milliseconds since the Unix epoch, as stamped by the proposer.
    pub now_ms: u64,
}

/// A deterministic state machine: the same commands in the same order give the same replies,
/// effects and state on every replica. No I/O, clock or randomness inside `apply`.
pub trait Machine {
    type Command;
    type Reply;
    type Effect;

    /// Applies one committed command. Effects are appended to `effects`; the caller carries
    /// them out (on the leader only, once clustering exists).
    fn apply(&mut self, meta: ApplyMeta, cmd: Self::Command, effects: &mut Vec<Self::Effect>) -> Self::Reply;
}

/// A replication group of one member whose log lives in memory.
///
/// Entries are applied as soon as they are appended, and the log is truncated behind the
/// applied index, so memory follows the machine's state and not its history.
#[derive(Debug)]
pub struct Group<M> {
    machine: M,
    last_applied: LogIndex,
}

impl<M: Machine> Group<M> {
    pub fn new(machine: M) -> Self {
        Self { machine, last_applied: LogIndex(0) }
    }

    /// Proposes `cmd`, stamped with `now_ms`; returns the machine's reply once committed and
    /// applied. Effects are appended to `effects`.
    pub fn propose(&mut self, now_ms: u64, cmd: M::Command, effects: &mut Vec<M::Effect>) -> M::Reply {
        let index = LogIndex(self.last_applied.0 + 1);
        let reply = self.machine.apply(ApplyMeta { index, now_ms }, cmd, effects);
        self.last_applied = index;
        reply
    }

    /// Read-only access to the applied state (local reads, snapshots for routing).
    pub fn state(&self) -> &M {
        &self.machine
    }

    pub fn last_applied(&self) -> LogIndex {
        self.last_applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter(u64);
    impl Machine for Counter {
        type Command = u64;
        type Reply = u64;
        type Effect = LogIndex;
        fn apply(&mut self, meta: ApplyMeta, cmd: u64, effects: &mut Vec<LogIndex>) -> u64 {
            self.0 += cmd;
            effects.push(meta.index);
            self.0
        }
    }

    #[test]
    fn proposals_apply_in_order_with_increasing_indexes() {
        let mut g = Group::new(Counter(0));
        let mut fx = Vec::new();
        assert_eq!(g.propose(1, 2, &mut fx), 2);
        assert_eq!(g.propose(2, 3, &mut fx), 5);
        assert_eq!(fx, vec![LogIndex(1), LogIndex(2)]);
        assert_eq!(g.last_applied(), LogIndex(2));
    }
}
