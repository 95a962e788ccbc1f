//! Snapshot round trips and validation.

use super::*;

/// A state with plain, expiring and expired keys and two sessions; returns
/// the id of the session with kept answers (for requests 1 and 3).
fn populated() -> (Harness, u64) {
    let mut h = Harness::new();
    h.apply(1_000, set("plain", "v"));
    h.apply(1_000, set("ttl", "w"));
    h.apply(1_000, expire("ttl", 30));
    h.apply(1_000, set("gone", "x"));
    h.apply(1_000, expire("gone", 1));
    let c = h.register(1_500);
    h.apply_as(c, 1, 1, 1_500, incr("n"));
    h.apply_as(c, 3, 1, 1_500, incr("n"));
    h.register(1_600);
    (h, c)
}

#[test]
fn round_trip_is_exact() {
    let (h, _) = populated();
    let data = h.sm.snapshot();
    let restored = StateMachine::restore(Limits::default(), &data).unwrap();
    assert_eq!(restored, h.sm);
    assert_eq!(restored.applied_index(), h.sm.applied_index());
    assert_eq!(restored.snapshot(), data, "deterministic encoding");
    assert_eq!(restored.time_ms(), h.sm.time_ms(), "cluster time restored");
    assert_eq!(restored.ttl(b"ttl"), h.sm.ttl(b"ttl"));
    assert!(restored.ttl(b"ttl").seconds.is_some());
    assert_eq!(restored.get(b"gone"), h.sm.get(b"gone"));
}

#[test]
fn restored_replica_behaves_identically() {
    let (mut h, c) = populated();
    let mut r = Harness {
        sm: StateMachine::restore(Limits::default(), &h.sm.snapshot()).unwrap(),
        next_index: h.next_index,
    };
    // Session dedup survives: retry of request 1 and 3, then new request 2.
    for (seq, stamp) in [(1, 2_000), (3, 2_000), (2, 40_000)] {
        let a = h.apply_as(c, seq, 1, stamp, incr("n"));
        let b_ = r.apply_as(c, seq, 1, stamp, incr("n"));
        assert_eq!(a, b_);
    }
    assert_eq!(h.get("n", 0), Some("3".into()));
    assert_eq!(h.sm, r.sm);
    assert_eq!(h.get("ttl", 0), None, "expired at 31_000");
}

#[test]
fn empty_round_trip() {
    let sm = StateMachine::new(Limits::default());
    assert_eq!(
        StateMachine::restore(Limits::default(), &sm.snapshot()).unwrap(),
        sm
    );
}

#[test]
fn corrupt_snapshots_are_refused() {
    let data = populated().0.sm.snapshot().to_vec();
    let invalid = |bytes: &[u8]| {
        let e = StateMachine::restore(Limits::default(), bytes).unwrap_err();
        assert_eq!(e.code(), Code::Invalid);
        e.message
    };
    invalid(&[]);
    invalid(&data[..8]);
    invalid(b"nonsense-of-some-length");
    let mut flipped = data.clone();
    *flipped.last_mut().unwrap() ^= 1;
    assert!(invalid(&flipped).contains("checksum"));
    let mut version = data.clone();
    version[4..8].copy_from_slice(&2u32.to_le_bytes());
    assert!(invalid(&version).contains("version 2"));
    let mut truncated = data.clone();
    truncated.truncate(data.len() - 3);
    invalid(&truncated);
}
