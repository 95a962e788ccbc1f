//! Expiry: deterministic across replicas, clock never backwards.

use super::*;

#[test]
fn deadline_is_state_machine_time_plus_seconds() {
    let mut h = Harness::new();
    h.apply(10_000, set("k", "v"));
    h.apply(10_000, expire("k", 5));
    // Deadline 15_000: live just before, absent from the deadline on.
    assert_eq!(h.get("k", 14_999), Some("v".into()));
    assert_eq!(h.get("k", 15_000), None);
    assert!(!h.ttl("k", 15_000).found);
}

#[test]
fn ttl_rounds_up() {
    let mut h = Harness::new();
    h.apply(0, set("k", "v"));
    h.apply(0, expire("k", 3));
    assert_eq!(h.ttl("k", 0).seconds, Some(3));
    assert_eq!(h.ttl("k", 1).seconds, Some(3));
    assert_eq!(h.ttl("k", 1_000).seconds, Some(2));
    assert_eq!(h.ttl("k", 2_999).seconds, Some(1));
    let missing = h.ttl("nope", 0);
    assert!(!missing.found);
    assert_eq!(missing.seconds, None);
}

#[test]
fn clock_never_runs_backwards() {
    let mut h = Harness::new();
    h.apply(20_000, set("k", "v"));
    // A later entry with an older stamp (a new leader with a slower clock)
    // does not move time back: the deadline counts from 20_000.
    h.apply(5_000, expire("k", 10));
    assert_eq!(h.ttl("k", 0).seconds, Some(10));
    assert_eq!(h.get("k", 29_999), Some("v".into()));
    assert_eq!(h.get("k", 30_000), None);
    h.apply(31_000, set("other", "x"));
    assert_eq!(h.get("k", 0), None);
}

/// Reads are evaluated at the applied cluster time and nothing else: two
/// replicas that applied the same entries answer the same, whatever their
/// clocks say (a key hidden by a node whose wall clock ran ahead must not be
/// shown again by the next leader).
#[test]
fn reads_are_evaluated_at_applied_cluster_time_only() {
    let mut h = Harness::new();
    h.apply(1_000, set("k", "v"));
    h.apply(1_000, expire("k", 1));
    // However long ago that was, the key lives until an entry moves time.
    assert!(h.sm.get(b"k").found);
    assert_eq!(h.sm.ttl(b"k").seconds, Some(1));
    // A time entry (a proposal without a command) moves it.
    h.advance(1_999);
    assert!(h.sm.get(b"k").found);
    h.advance(2_000);
    assert!(!h.sm.get(b"k").found);
    // The sweep ran with the time entry: the key is gone, not just hidden.
    assert_eq!(h.sm.len(), 0);
    assert!(!h.sm.has_deadlines());
}

#[test]
fn a_time_entry_never_moves_time_back() {
    let mut h = Harness::new();
    h.apply(5_000, set("k", "v"));
    h.advance(5_000);
    let back = Proposal {
        session: None,
        stamp_ms: 10,
        command: None,
        user: String::new(),
    };
    h.apply_raw(&back.encode_to_vec());
    assert_eq!(h.sm.time_ms(), 5_000);
}

#[test]
fn a_write_after_the_deadline_sees_the_key_absent() {
    let mut h = Harness::new();
    h.apply(0, set("k", "5"));
    h.apply(0, expire("k", 1));
    // INCR after expiry starts from 0, not from the stale value.
    assert_eq!(incr_value(&h.apply(1_000, incr("k"))), 1);
    assert_eq!(h.ttl("k", 1_000).seconds, None);
    h.apply(1_000, expire("k", 1));
    assert!(!del_existed(&h.apply(2_000, del("k"))));
    h.apply(2_000, set("c", "old"));
    h.apply(2_000, expire("c", 1));
    let r = h.apply(3_000, cas("c", None, "new"));
    assert!(matches!(r.result, Some(Outcome::Cas(ref c)) if c.swapped));
    h.apply(3_000, set("e", "v"));
    h.apply(3_000, expire("e", 1));
    let r = h.apply(4_000, expire("e", 100));
    assert!(matches!(r.result, Some(Outcome::Expire(ref e)) if !e.applied));
}

fn del_existed(r: &WriteResponse) -> bool {
    match &r.result {
        Some(Outcome::Del(d)) => d.existed,
        other => panic!("expected DEL, got {other:?}"),
    }
}

#[test]
fn sweep_removes_expired_keys_in_apply() {
    let mut h = Harness::new();
    for i in 0..10 {
        h.apply(0, set(&format!("k{i}"), "v"));
        h.apply(0, expire(&format!("k{i}"), 1 + i % 3));
    }
    assert_eq!(h.sm.len(), 10);
    h.apply(2_000, set("unrelated", "v"));
    // Deadlines 1s and 2s passed (i % 3 in {0, 1}: 7 keys).
    assert_eq!(h.sm.len(), 4);
    h.apply(3_000, set("unrelated", "v"));
    assert_eq!(h.sm.len(), 1);
}

#[test]
fn sweep_is_bounded_per_entry_but_reads_hide_the_rest() {
    let mut h = Harness::new();
    for i in 0..200 {
        h.apply(0, set(&format!("k{i:03}"), "v"));
        h.apply(0, expire(&format!("k{i:03}"), 1));
    }
    h.apply(1_000, set("x", "v"));
    assert_eq!(h.sm.len(), 201 - super::super::SWEEP_PER_APPLY);
    assert_eq!(h.get("k199", 0), None);
    for _ in 0..4 {
        h.apply(1_000, set("x", "v"));
    }
    assert_eq!(h.sm.len(), 1);
}

#[test]
fn replicas_applying_the_same_entries_agree() {
    let entries: Vec<Vec<u8>> = [
        (1_000, set("a", "1")),
        (1_000, expire("a", 2)),
        (900, set("b", "2")),
        (2_500, expire("b", 1)),
        (2_000, incr("a")),
        (3_000, incr("c")),
        (3_600, set("d", "x")),
    ]
    .into_iter()
    .map(|(stamp, op)| encode(None, stamp, op))
    .collect();
    let mut one = Harness::new();
    let mut two = Harness::new();
    for (i, e) in entries.iter().enumerate() {
        let r1 = one.apply_raw(e);
        // The second replica reads in between; reads must not change state.
        let _ = two.sm.get(b"a");
        let r2 = two.apply_raw(e);
        assert_eq!(r1, r2, "entry {i}");
    }
    assert_eq!(one.sm, two.sm);
    assert_eq!(one.sm.snapshot(), two.sm.snapshot());
    // "a" expired at 3_000 (INCR at 2_000 kept its deadline), "b" at 3_500.
    assert_eq!(one.get("a", 0), None);
    assert_eq!(one.get("b", 0), None);
    assert_eq!(one.get("c", 0), Some("1".into()));
}
