//! Exactly-once sessions.

use super::*;
use crate::kv::sessions::{MAX_KEPT_BYTES, MAX_KEPT_BYTES_PER_CLIENT};
use crate::kv::{MAX_KEPT_RESPONSES, SESSION_TIMEOUT_MS};

#[test]
fn retried_incr_applies_once() {
    let mut h = Harness::new();
    let c = h.register(0);
    let first = h.apply_as(c, 1, 1, 0, incr("n"));
    assert_eq!(incr_value(&first), 1);
    // The retry (e.g. after a leader change) lands at a later index.
    let retry = h.apply_as(c, 1, 1, 0, incr("n"));
    assert_eq!(retry, first);
    assert_eq!(h.get("n", 0), Some("1".into()));
    assert_eq!(incr_value(&h.apply_as(c, 2, 2, 0, incr("n"))), 2);
}

#[test]
fn out_of_order_concurrent_requests() {
    let mut h = Harness::new();
    let c = h.register(0);
    // Requests 1..=3 in flight; applied 3, 1, 2, then all retried.
    let r3 = h.apply_as(c, 3, 1, 0, incr("n"));
    let r1 = h.apply_as(c, 1, 1, 0, incr("n"));
    let r2 = h.apply_as(c, 2, 1, 0, incr("n"));
    assert_eq!(
        [incr_value(&r3), incr_value(&r1), incr_value(&r2)],
        [1, 2, 3]
    );
    assert_eq!(h.apply_as(c, 2, 1, 0, incr("n")), r2);
    assert_eq!(h.apply_as(c, 1, 1, 0, incr("n")), r1);
    assert_eq!(h.apply_as(c, 3, 1, 0, incr("n")), r3);
    assert_eq!(h.get("n", 0), Some("3".into()));
}

#[test]
fn acknowledged_answers_are_dropped_and_expire() {
    let mut h = Harness::new();
    let c = h.register(0);
    h.apply_as(c, 1, 1, 0, incr("n"));
    h.apply_as(c, 2, 1, 0, incr("n"));
    // Request 3 says 1 and 2 were answered: their answers are dropped.
    h.apply_as(c, 3, 3, 0, incr("n"));
    assert_eq!(
        error_code(&h.apply_as(c, 1, 3, 0, incr("n"))),
        Code::SessionExpired
    );
    assert_eq!(
        error_code(&h.apply_as(c, 2, 1, 0, incr("n"))),
        Code::SessionExpired
    );
    assert_eq!(h.get("n", 0), Some("3".into()));
}

#[test]
fn refused_answers_are_kept_too() {
    let mut h = Harness::new();
    let c = h.register(0);
    h.apply(0, set("t", "text"));
    let first = h.apply_as(c, 1, 1, 0, incr("t"));
    assert_eq!(error_code(&first), Code::NotAnInteger);
    h.apply(0, set("t", "7"));
    // The retry gets the original refusal, not a fresh INCR of 7.
    assert_eq!(h.apply_as(c, 1, 1, 0, incr("t")), first);
    assert_eq!(h.get("t", 0), Some("7".into()));
}

#[test]
fn unknown_client_is_refused() {
    let mut h = Harness::new();
    h.apply(0, set("a", "1"));
    let r = h.apply_as(1, 1, 1, 0, incr("n"));
    assert_eq!(error_code(&r), Code::SessionExpired);
    assert_eq!(h.get("n", 0), None);
    // Client 0 means "no session": applied directly, every time.
    h.apply_as(0, 1, 1, 0, incr("n"));
    h.apply_as(0, 1, 1, 0, incr("n"));
    assert_eq!(h.get("n", 0), Some("2".into()));
}

#[test]
fn first_incomplete_above_seq_is_invalid() {
    let mut h = Harness::new();
    let c = h.register(0);
    assert_eq!(
        error_code(&h.apply_as(c, 2, 3, 0, incr("n"))),
        Code::Invalid
    );
    assert_eq!(h.get("n", 0), None);
}

#[test]
fn idle_sessions_expire_after_an_hour_of_state_machine_time() {
    let mut h = Harness::new();
    let idle = h.register(0);
    let busy = h.register(0);
    h.apply_as(busy, 1, 1, SESSION_TIMEOUT_MS - 1, incr("n"));
    // `idle` is gone from the deadline on, even without a sweep reaching it.
    let r = h.apply_as(idle, 1, 1, SESSION_TIMEOUT_MS, incr("n"));
    assert_eq!(error_code(&r), Code::SessionExpired);
    assert!(!h.sm.sessions.contains(idle));
    assert_eq!(
        incr_value(&h.apply_as(busy, 2, 2, SESSION_TIMEOUT_MS, incr("n"))),
        2
    );
    // The sweep removes it with no request of its own.
    h.apply(2 * SESSION_TIMEOUT_MS, set("x", "y"));
    assert!(!h.sm.sessions.contains(busy));
    assert_eq!(h.sm.sessions.len(), 0);
}

#[test]
fn least_recently_active_session_is_evicted_at_the_cap() {
    let mut h = Harness::with_limits(Limits {
        max_sessions: 3,
        ..Limits::default()
    });
    let a = h.register(0);
    let b_ = h.register(0);
    let c = h.register(0);
    h.apply_as(a, 1, 1, 10, incr("n")); // a is now the most recent
    let d = h.register(20); // evicts b (older activity than c; same time as c → lower id)
    assert!(!h.sm.sessions.contains(b_));
    assert!(h.sm.sessions.contains(a) && h.sm.sessions.contains(c) && h.sm.sessions.contains(d));
    assert_eq!(
        error_code(&h.apply_as(b_, 1, 1, 20, incr("n"))),
        Code::SessionExpired
    );
    assert_eq!(h.get("n", 0), Some("1".into()));
}

#[test]
fn kept_answers_per_client_are_bounded() {
    let mut h = Harness::new();
    let c = h.register(0);
    let total = MAX_KEPT_RESPONSES as u64 + 5;
    for seq in 1..=total {
        // Never acknowledges anything.
        h.apply_as(c, seq, 1, 0, incr("n"));
    }
    // The oldest five answers were forgotten: refused, never re-applied.
    for seq in 1..=5 {
        assert_eq!(
            error_code(&h.apply_as(c, seq, 1, 0, incr("n"))),
            Code::SessionExpired
        );
    }
    assert_eq!(incr_value(&h.apply_as(c, 6, 1, 0, incr("n"))), 6);
    assert_eq!(h.get("n", 0), Some(total.to_string()));
}

#[test]
fn register_ignores_a_carried_session() {
    let mut h = Harness::new();
    let r = h.apply_as(999, 1, 1, 0, register());
    assert!(matches!(r.result, Some(Outcome::Register(ref g)) if g.client_id == 1));
}

/// A value just under the 1 MiB limit, so each CAS answer is about 1 MiB.
const BIG: usize = (1 << 20) - 100;

/// A CAS that creates key `k` with `len` bytes; its answer carries them.
fn big_cas(k: &str, len: usize) -> Op {
    Op::Cas(CasCmd {
        key: b(k),
        expected: None,
        value: Bytes::from(vec![b'v'; len]),
    })
}

fn swapped(r: &WriteResponse) -> bool {
    matches!(&r.result, Some(Outcome::Cas(c)) if c.swapped)
}

#[test]
fn kept_answers_per_client_are_bounded_in_bytes() {
    let mut h = Harness::new();
    let c = h.register(0);
    let total = 12;
    for seq in 1..=total {
        // Never acknowledges anything: every answer would be kept.
        assert!(swapped(&h.apply_as(
            c,
            seq,
            1,
            0,
            big_cas(&format!("k{seq}"), BIG)
        )));
    }
    let kept = (MAX_KEPT_BYTES_PER_CLIENT / BIG) as u64;
    assert!(kept < total, "the bound bites");
    assert!(h.sm.sessions.kept_bytes() <= MAX_KEPT_BYTES_PER_CLIENT);
    // The oldest answers were forgotten: a retry is refused (outcome unknown
    // to the client), never re-applied or answered wrongly.
    for seq in 1..=total - kept {
        let r = h.apply_as(c, seq, 1, 0, big_cas(&format!("k{seq}"), BIG));
        assert_eq!(error_code(&r), Code::SessionExpired, "seq {seq}");
    }
    // The newest are replayed: the original "swapped", not a fresh refusal.
    for seq in total - kept + 2..=total {
        let r = h.apply_as(c, seq, 1, 0, big_cas(&format!("k{seq}"), BIG));
        assert!(swapped(&r), "seq {seq} replays its answer");
    }
}

#[test]
fn kept_answers_of_all_clients_are_bounded_oldest_first() {
    let mut h = Harness::new();
    let clients = MAX_KEPT_BYTES / BIG + 6;
    let ids: Vec<u64> = (0..clients).map(|_| h.register(0)).collect();
    for (i, &c) in ids.iter().enumerate() {
        // Client i is active at time i: the earlier ones are the oldest.
        let r = h.apply_as(c, 1, 1, i as u64, big_cas(&format!("k{i}"), BIG));
        assert!(swapped(&r));
    }
    assert!(h.sm.sessions.kept_bytes() <= MAX_KEPT_BYTES);
    let now = clients as u64;
    let first = h.apply_as(ids[0], 1, 1, now, big_cas("k0", BIG));
    assert_eq!(error_code(&first), Code::SessionExpired);
    let last = ids[clients - 1];
    let r = h.apply_as(last, 1, 1, now, big_cas(&format!("k{}", clients - 1), BIG));
    assert!(swapped(&r), "the most recent answer is kept");
    // The session itself survives: its next request is applied.
    assert!(swapped(&h.apply_as(
        ids[0],
        2,
        2,
        now,
        big_cas("fresh", 10)
    )));
}

#[test]
fn eviction_is_the_same_on_a_replica_restored_from_a_snapshot() {
    let caps = (3_000, 5_000);
    let limits = Limits {
        max_kept_bytes_per_client: caps.0,
        max_kept_bytes: caps.1,
        ..Limits::default()
    };
    let mut h = Harness::with_limits(limits);
    let (a, c) = (h.register(0), h.register(0));
    h.apply_as(a, 1, 1, 1, big_cas("a1", 1_000));
    h.apply_as(c, 1, 1, 2, big_cas("c1", 1_000));
    let mut r = Harness {
        sm: StateMachine::restore(limits, &h.sm.snapshot()).unwrap(),
        next_index: h.next_index,
    };
    assert_eq!(r.sm, h.sm, "indexes rebuilt from the sessions alone");
    for (i, t) in (2..8).zip(3..) {
        let client = if i % 2 == 0 { a } else { c };
        let op = || big_cas(&format!("x{i}"), 900);
        assert_eq!(
            h.apply_as(client, i, 1, t, op()),
            r.apply_as(client, i, 1, t, op())
        );
        assert!(h.sm.sessions.kept_bytes() <= caps.1);
    }
    assert_eq!(r.sm, h.sm);
    assert_eq!(r.sm.snapshot(), h.sm.snapshot());
    // a (least recently active) lost its oldest answer first.
    assert_eq!(
        error_code(&h.apply_as(a, 1, 1, 9, big_cas("a1", 1))),
        Code::SessionExpired
    );
}

/// A session evicted at the session cap while it keeps answers takes its
/// answers' bytes with it: the byte bound later finds only live holders
/// (an evicted holder left behind made every replica panic on the entry
/// that crossed the bound, and again on every replay).
#[test]
fn an_evicted_session_holding_answers_leaves_no_trace() {
    let limits = Limits {
        max_sessions: 2,
        max_kept_bytes_per_client: 3_000,
        max_kept_bytes: 4_000,
        ..Limits::default()
    };
    let mut h = Harness::with_limits(limits);
    let a = h.register(0);
    // a keeps an answer it never acknowledges.
    assert!(swapped(&h.apply_as(a, 1, 1, 1, big_cas("a", 500))));
    let (b_, c) = (h.register(2), h.register(3));
    assert!(
        !h.sm.sessions.contains(a),
        "a was the least recently active"
    );
    assert_eq!(h.sm.sessions.kept_bytes(), 0, "its answer went with it");
    // Cross the total bound: the oldest answers of live clients go first.
    for seq in 1..=4 {
        h.apply_as(b_, seq, 1, 4, big_cas(&format!("b{seq}"), 900));
        h.apply_as(c, seq, 1, 5, big_cas(&format!("c{seq}"), 900));
    }
    assert!(h.sm.sessions.kept_bytes() <= 4_000);
    let restored = StateMachine::restore(limits, &h.sm.snapshot()).unwrap();
    assert_eq!(restored, h.sm, "a restored replica counts the same bytes");
}
