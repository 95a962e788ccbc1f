//! The serving gate is node-wide (docs/consensus.md, "The leader lease",
//! step 4): a leader that steps down during its wait releases nothing early.

use super::*;

fn indexes(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.index().0).collect()
}

/// n0 wins term 2 while n1 reports an old lease with 200 ms left; a write
/// commits during the wait; n0 steps down (a newer leader's append) before
/// the wait is over. Nothing is released to apply — hence acknowledged —
/// before the wait ends (`Broken::GateOnlyWhileLeader` releases it at the
/// step-down).
#[test]
fn a_leader_that_steps_down_keeps_its_gate_closed() {
    let mut r = leader(Duration::from_millis(200));
    let id = r
        .propose(Bytes::from_static(b"w"), at(1010))
        .expect("leader");
    assert_eq!(id, LogId::new(2, 3));
    settled(&mut r);
    r.step(ack(N1, 2, 3, 1), at(1020));
    assert_eq!(r.commit_index(), LogIndex(3));
    assert!(
        settled(&mut r).committed.is_empty(),
        "waiting: nothing released"
    );
    // A newer leader (n1, term 3) appears: n0 follows it.
    let heartbeat = MessageBody::Append {
        prev: LogId::new(2, 3),
        entries: vec![],
        commit: LogIndex(3),
        round: 1,
    };
    r.step(msg(N1, N0, 3, heartbeat), at(1030));
    assert_eq!(r.role(), Role::Follower);
    assert!(
        settled(&mut r).committed.is_empty(),
        "still waiting as a follower"
    );
    assert!(
        r.next_deadline() <= at(1200),
        "the driver wakes when the gate opens"
    );
    r.tick(at(1199));
    assert!(settled(&mut r).committed.is_empty());
    r.tick(at(1200));
    assert_eq!(indexes(&settled(&mut r).committed), [2, 3]);
}

/// A follower that never led releases what commits at once.
#[test]
fn a_follower_that_never_led_applies_at_once() {
    let mut f = node(N1, 2, log(&[2, 2]), 1);
    settled(&mut f);
    let append = MessageBody::Append {
        prev: LogId::new(2, 3),
        entries: vec![],
        commit: LogIndex(3),
        round: 1,
    };
    f.step(msg(N0, N1, 2, append), at(5));
    assert_eq!(indexes(&settled(&mut f).committed), [2, 3]);
}

/// Found by the peer_message fuzz target: n0 confirms a read under its
/// lease at commit index 2 before a `ready()` released index 2; a newer
/// leader's heartbeat and its `TimeoutNow` make n0 step down and win term
/// 4, which closes the gate for an old lease. Before the fix the next
/// `Ready` handed out the read with nothing applied up to its index (a
/// debug assertion of the core).
#[test]
fn a_read_waits_for_its_index_when_the_gate_closes_again() {
    let mut r = leader(Duration::ZERO);
    r.step(ack(N1, 2, 2, 1), at(1001));
    assert_eq!(r.commit_index(), LogIndex(2));
    r.read(7, at(1002)).expect("leader");
    let heartbeat = MessageBody::Heartbeat {
        commit: LogIndex(2),
        round: 1,
    };
    r.step(msg(N1, N0, 3, heartbeat), at(1003));
    let timeout = MessageBody::TimeoutNow {
        lease_released: false,
    };
    r.step(msg(N1, N0, 3, timeout), at(1004));
    assert_eq!(r.role(), Role::Candidate);
    let vote = MessageBody::VoteResponse {
        granted: true,
        pre_vote: false,
        lease_remaining: Duration::ZERO,
        lease_term: Term(3),
    };
    r.step(msg(N1, N0, 4, vote), at(1005));
    assert_eq!(r.role(), Role::Leader);
    let ready = settled(&mut r);
    assert!(ready.committed.is_empty(), "waiting: nothing released");
    assert!(
        ready.reads.is_empty(),
        "read handed out before index 2 applies"
    );
    r.tick(at(1300));
    let ready = settled(&mut r);
    assert_eq!(indexes(&ready.committed), [2]);
    assert_eq!(ready.reads.iter().map(|r| r.id).collect::<Vec<_>>(), [7]);
}
