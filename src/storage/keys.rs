//! Key layout: every key starts with its group id, big-endian, so a group's keys are one
//! contiguous, ordered range.

/// A replication group's id on this node. Allocated by `Storage::allocate_group`; never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId(pub u64);

pub(super) fn log_key(group: GroupId, index: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&group.0.to_be_bytes());
    k[8..].copy_from_slice(&index.to_be_bytes());
    k
}

pub(super) fn state_key(group: GroupId, tag: u8) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[..8].copy_from_slice(&group.0.to_be_bytes());
    k[8] = tag;
    k
}

/// The index in a log key, if the key belongs to `group`.
pub(super) fn index_of(group: GroupId, key: &[u8]) -> Option<u64> {
    if key.len() != 16 || key[..8] != group.0.to_be_bytes() {
        return None;
    }
    decode_u64(&key[8..])
}

pub(super) fn decode_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_by_group_then_index() {
        let a = log_key(GroupId(1), u64::MAX);
        let b = log_key(GroupId(2), 0);
        assert!(a < b);
        assert!(log_key(GroupId(1), 9) < log_key(GroupId(1), 10));
        assert_eq!(index_of(GroupId(1), &log_key(GroupId(1), 42)), Some(42));
        assert_eq!(index_of(GroupId(2), &log_key(GroupId(1), 42)), None);
    }
}
