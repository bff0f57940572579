//! Leader changes: what comes back, who waits, who is cancelled.

use super::super::tests::{delivered, machine, msg, run, run_at, spec};
use super::super::*;

fn enqueue(q: &mut super::super::tests::TestQueue, n: u32) -> Vec<Effect> {
    run(q, Command::Enqueue { msg: msg(n) }).1
}

#[test]
fn failover_requeues_every_unacked_message_and_detaches_every_consumer() {
    let mut q = machine(false, false);
    run(&mut q, Command::Consume(spec(1, 10)));
    for n in 0..3 {
        enqueue(&mut q, n);
    }
    assert_eq!(q.unacked_count(), 3);
    let (reply, fx) = run_at(&mut q, 100, Command::Failover);
    assert!(matches!(reply, Reply::Settled(3)));
    // Nothing goes to the detached consumer: it may not be connected to this leader.
    assert!(delivered(&fx).is_empty());
    assert_eq!((q.ready_count(), q.unacked_count(), q.consumer_count()), (3, 0, 1));
    // Attached again: the messages come, redelivered, in their order.
    let (reply, fx) = run_at(&mut q, 200, Command::Attach { consumers: vec![ConsumerId(1), ConsumerId(9)] });
    assert!(matches!(reply, Reply::Attached(ref missing) if missing == &[ConsumerId(9)]));
    assert_eq!(delivered(&fx), vec![(1, 1, true), (1, 2, true), (1, 3, true)]);
}

#[test]
fn a_detached_consumer_is_cancelled_after_the_grace_and_others_are_served() {
    let mut q = machine(false, false);
    run(&mut q, Command::Consume(spec(1, 10)));
    run(&mut q, Command::Consume(spec(2, 10)));
    enqueue(&mut q, 0);
    enqueue(&mut q, 1);
    // Consumer 1's node is cut off: its message goes to consumer 2.
    let (_, fx) = run_at(&mut q, 1_000, Command::Detach { consumers: vec![ConsumerId(1)] });
    assert_eq!(delivered(&fx), vec![(2, 1, true)]);
    assert_eq!(q.next_expiry(), Some(1_000 + DETACHED_GRACE_MS));
    let (_, fx) = run_at(&mut q, 1_000 + DETACHED_GRACE_MS - 1, Command::Expire);
    assert!(fx.is_empty());
    let (_, fx) = run_at(&mut q, 1_000 + DETACHED_GRACE_MS, Command::Expire);
    assert!(fx.iter().any(|e| matches!(e, Effect::ConsumerCancelled { consumer: ConsumerId(1) })));
    assert_eq!(q.consumer_count(), 1);
    assert_eq!(q.next_expiry(), None);
}

#[test]
fn single_active_consumer_passes_to_the_next_attached_one() {
    let mut q = machine(true, false);
    run(&mut q, Command::Consume(spec(1, 10)));
    run(&mut q, Command::Consume(spec(2, 10)));
    run(&mut q, Command::Detach { consumers: vec![ConsumerId(1)] });
    let fx = enqueue(&mut q, 0);
    assert_eq!(delivered(&fx), vec![(2, 1, false)]);
}

#[test]
fn the_failover_state_survives_a_snapshot() {
    let mut q = machine(false, false);
    run(&mut q, Command::Consume(spec(1, 10)));
    run_at(&mut q, 500, Command::Failover);
    let bytes = bytes::Bytes::from(<QueueMachine as crate::raft::DurableMachine>::encode_state(&q.m));
    let back = <QueueMachine as crate::raft::DurableMachine>::decode_state(&bytes).expect("decodes");
    assert_eq!(back.next_expiry(), Some(500 + DETACHED_GRACE_MS));
}
