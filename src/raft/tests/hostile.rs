//! Messages no correct peer sends are dropped, never a panic
//! (`src/raft/validate.rs`).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

fn rejection(conflict: LogId) -> MessageBody {
    MessageBody::AppendResponse {
        success: false,
        match_index: LogIndex(0),
        conflict,
        round: 1,
    }
}

fn append(prev: LogId, entries: Vec<Entry>, commit: u64) -> MessageBody {
    MessageBody::Append {
        prev,
        entries,
        commit: LogIndex(commit),
        round: 1,
    }
}

fn entry(term: u64, index: u64) -> Entry {
    Entry {
        id: LogId::new(term, index),
        payload: Payload::Noop,
    }
}

/// Steps `m` into `r` and returns why it was dropped, if it was.
fn feed(r: &mut Raft, m: Message, now: Instant) -> Vec<&'static str> {
    r.step(m, now);
    dropped(&settled(r).events)
}

/// Unchecked, the leader would back the follower up to a next index far
/// beyond its log and panic on `expect("compacted log has a snapshot")`.
#[test]
fn a_huge_conflict_hint_is_dropped() {
    let mut r = leader(Duration::ZERO);
    let m = msg(N1, N0, 2, rejection(LogId::new(0, u64::MAX)));
    assert_eq!(feed(&mut r, m, at(1001)), ["conflict hint beyond our log"]);
    r.tick(at(1100));
    assert_eq!(r.role(), Role::Leader);
    assert!(settled(&mut r).messages.iter().all(|m| match &m.body {
        MessageBody::Append { prev, .. } => prev.index <= LogIndex(2),
        _ => true,
    }));
}

/// Unchecked, it reaches `assert!` "two leaders in term 2" — possible when
/// two processes share a node id and both win the same term.
#[test]
fn a_second_leader_in_our_term_is_dropped() {
    let mut r = leader(Duration::ZERO);
    let m = msg(N1, N0, 2, append(LogId::new(2, 2), vec![], 2));
    assert_eq!(
        feed(&mut r, m, at(1001)),
        ["another leader in our term (two nodes share an id?)"]
    );
    let snap = msg(N1, N0, 2, snapshot_msg(LogId::new(2, 9), 1));
    assert_eq!(
        feed(&mut r, snap, at(1002)),
        ["another leader in our term (two nodes share an id?)"]
    );
    assert_eq!(r.role(), Role::Leader);
}

#[test]
fn a_message_under_our_own_id_is_dropped() {
    let mut f = node(N1, 2, log(&[2]), 1);
    let m = msg(N1, N1, 3, append(LogId::new(2, 2), vec![], 2));
    assert_eq!(
        feed(&mut f, m, at(1)),
        ["sent under our own node id (two nodes share an id?)"]
    );
    assert_eq!(f.term(), Term(2));
}

/// Unchecked, it reaches the truncation's safety `assert!`.
#[test]
fn an_append_that_would_overwrite_a_committed_entry_is_dropped() {
    let mut f = node(N1, 2, log(&[2, 2]), 3);
    settled(&mut f);
    let m = msg(N0, N1, 3, append(LogId::new(2, 2), vec![entry(3, 3)], 3));
    assert_eq!(
        feed(&mut f, m, at(1)),
        ["would overwrite a committed entry"]
    );
    assert_eq!(f.last_log_id(), LogId::new(2, 3));
}

#[test]
fn malformed_appends_are_dropped() {
    let mut f = node(N1, 2, log(&[2]), 1);
    let cases = [
        (
            append(LogId::new(2, 2), vec![entry(2, 4)], 0),
            "entries not contiguous after the previous entry",
        ),
        (
            append(LogId::new(2, 2), vec![entry(3, 3), entry(2, 4)], 0),
            "entry terms out of order",
        ),
        (
            append(LogId::new(2, 2), vec![entry(9, 3)], 0),
            "entry terms out of order",
        ),
        (
            append(LogId::new(2, u64::MAX), vec![entry(2, 0)], 0),
            "entry index out of range",
        ),
        (
            append(LogId::new(7, 2), vec![], 0),
            "previous entry from a later term than the message",
        ),
    ];
    for (body, why) in cases {
        assert_eq!(feed(&mut f, msg(N0, N1, 3, body), at(1)), [why]);
    }
    assert_eq!(f.last_log_id(), LogId::new(2, 2));
}

/// Unchecked, `now + Duration::MAX` overflows when the node wins.
#[test]
fn an_impossible_lease_report_is_dropped() {
    let mut r = node(N0, 1, log(&[]), 1);
    r.tick(at(1000));
    let body = MessageBody::VoteResponse {
        granted: true,
        pre_vote: true,
        lease_remaining: Duration::MAX,
        lease_term: Term(1),
    };
    assert_eq!(
        feed(&mut r, msg(N1, N0, 2, body), at(1000)),
        ["reports a lease longer than any lease"]
    );
    assert_eq!(r.role(), Role::PreCandidate);
}

#[test]
fn impossible_acknowledgements_are_dropped() {
    let mut r = leader(Duration::ZERO);
    let cases = [
        (ack(N1, 2, 99, 1), "acknowledges entries we do not have"),
        (ack(N1, 2, 2, 7), "acknowledges a round not yet sent"),
        (
            msg(
                N1,
                N0,
                2,
                MessageBody::SnapshotResponse {
                    last_index: LogIndex(u64::MAX),
                    next_offset: 0,
                    done: true,
                    round: 1,
                },
            ),
            "acknowledges a snapshot we never sent",
        ),
    ];
    for (m, why) in cases {
        assert_eq!(feed(&mut r, m, at(1001)), [why]);
    }
    assert_eq!(
        r.commit_index(),
        LogIndex(1),
        "no entry of term 2 committed"
    );
}

#[test]
fn a_snapshot_without_voters_or_at_index_zero_is_dropped() {
    let mut f = node(N1, 2, log(&[2]), 1);
    let mut body = snapshot_msg(LogId::new(2, 5), 1);
    if let MessageBody::Snapshot { meta, .. } = &mut body {
        meta.membership = Membership::default();
    }
    assert_eq!(
        feed(&mut f, msg(N0, N1, 2, body), at(1)),
        ["snapshot membership without voters"]
    );
    let body = snapshot_msg(LogId::new(2, 0), 1);
    assert_eq!(
        feed(&mut f, msg(N0, N1, 2, body), at(2)),
        ["snapshot index out of range"]
    );
}

#[test]
fn a_term_at_its_maximum_is_dropped() {
    let mut f = node(N1, 2, log(&[2]), 1);
    let m = msg(N0, N1, u64::MAX, append(LogId::new(2, 2), vec![], 2));
    assert_eq!(feed(&mut f, m, at(1)), ["term at its maximum"]);
    assert_eq!(f.term(), Term(2));
}

/// A heartbeat from a second leader in our term, and an answer to a round
/// we never started, are dropped like their append counterparts.
#[test]
fn hostile_heartbeats_are_dropped() {
    let mut r = leader(Duration::ZERO);
    let beat = MessageBody::Heartbeat {
        commit: LogIndex(2),
        round: 1,
    };
    let m = msg(N1, N0, 2, beat);
    assert_eq!(
        feed(&mut r, m, at(1001)),
        ["another leader in our term (two nodes share an id?)"]
    );
    let m = msg(N1, N0, 2, MessageBody::HeartbeatResponse { round: 99 });
    assert_eq!(
        feed(&mut r, m, at(1002)),
        ["acknowledges a round not yet sent"]
    );
    assert_eq!(r.role(), Role::Leader);
}

/// A number the garbage generator likes: edges first.
fn any_u64(rng: &mut StdRng) -> u64 {
    match rng.random_range(0..6) {
        0 => 0,
        1 => u64::MAX,
        2 => u64::MAX - 1,
        3 => rng.random(),
        _ => rng.random_range(0..8),
    }
}

fn any_body(rng: &mut StdRng) -> MessageBody {
    let id = |rng: &mut StdRng| LogId::new(any_u64(rng), any_u64(rng));
    match rng.random_range(0..9) {
        0 => {
            let prev = id(rng);
            let n = rng.random_range(0..4);
            let contiguous = rng.random_bool(0.5);
            let entries = (0..n)
                .map(|i| {
                    if contiguous {
                        entry(prev.term.0, prev.index.0.wrapping_add(1 + i))
                    } else {
                        entry(any_u64(rng), any_u64(rng))
                    }
                })
                .collect();
            MessageBody::Append {
                prev,
                entries,
                commit: LogIndex(any_u64(rng)),
                round: any_u64(rng),
            }
        }
        1 => MessageBody::AppendResponse {
            success: rng.random(),
            match_index: LogIndex(any_u64(rng)),
            conflict: id(rng),
            round: any_u64(rng),
        },
        2 => MessageBody::Vote {
            last_log: id(rng),
            pre_vote: rng.random(),
            transfer: rng.random(),
        },
        3 => MessageBody::VoteResponse {
            granted: rng.random(),
            pre_vote: rng.random(),
            lease_remaining: Duration::from_nanos(any_u64(rng)),
            lease_term: Term(any_u64(rng)),
        },
        4 => {
            let mut body = snapshot_msg(id(rng), any_u64(rng));
            if let MessageBody::Snapshot { offset, done, .. } = &mut body {
                *offset = any_u64(rng);
                *done = rng.random();
            }
            body
        }
        5 => MessageBody::SnapshotResponse {
            last_index: LogIndex(any_u64(rng)),
            next_offset: any_u64(rng),
            done: rng.random(),
            round: any_u64(rng),
        },
        6 => MessageBody::Heartbeat {
            commit: LogIndex(any_u64(rng)),
            round: any_u64(rng),
        },
        7 => MessageBody::HeartbeatResponse {
            round: any_u64(rng),
        },
        _ => MessageBody::TimeoutNow {
            lease_released: rng.random(),
        },
    }
}

/// Random garbage — edge values, any sender (ours included), any term — at
/// a leader, a follower and a candidate, with ticks and proposals between:
/// the core never panics and keeps its log invariants.
#[test]
fn random_garbage_never_panics() {
    for seed in 0..300 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut r = match seed % 3 {
            0 => leader(Duration::from_millis(50)),
            1 => node(N1, 2, log(&[2, 2]), 2),
            _ => {
                let mut c = node(N0, 1, log(&[]), 1);
                c.tick(at(1000));
                c
            }
        };
        let mut now = at(1000);
        for _ in 0..200 {
            now = now + Duration::from_millis(rng.random_range(0..20));
            let from = NodeId(rng.random_range(0..4));
            let term = if rng.random_bool(0.5) {
                r.term().0.saturating_add(rng.random_range(0..2))
            } else {
                any_u64(&mut rng)
            };
            let to = r.id();
            r.step(msg(from, to, term, any_body(&mut rng)), now);
            if rng.random_bool(0.1) {
                r.tick(now);
            }
            if rng.random_bool(0.05) {
                let _ = r.propose(Bytes::from_static(b"x"), now);
            }
            let ready = settled(&mut r);
            let s = r.status(now);
            assert!(
                s.applied <= s.commit && s.commit <= s.last_index,
                "seed {seed}: {s:?}"
            );
            assert!(ready.committed.iter().all(|e| e.index() <= s.commit));
        }
    }
}
