//! The semantics of every command.

use super::*;
use crate::pb::{CasResult, DelResult, ExpireResult, IncrResult, SetResult};

#[test]
fn set_then_get_and_index() {
    let mut h = Harness::new();
    let r = h.apply(1_000, set("a", "1"));
    assert_eq!(r.result, Some(Outcome::Set(SetResult {})));
    assert_eq!(r.index, 1);
    assert_eq!(h.sm.applied_index(), 1);
    assert_eq!(h.get("a", 0), Some("1".into()));
    assert_eq!(h.sm.len(), 1);
    h.apply(1_000, set("a", "2"));
    assert_eq!(h.get("a", 0), Some("2".into()));
    assert_eq!(h.sm.applied_index(), 2);
}

#[test]
fn get_missing_is_not_found_and_empty() {
    let h = Harness::new();
    let r = h.sm.get(b"nope");
    assert!(!r.found);
    assert!(r.value.is_empty());
    assert!(h.sm.is_empty());
}

#[test]
fn del_reports_existence() {
    let mut h = Harness::new();
    h.apply(0, set("a", "1"));
    let r = h.apply(0, del("a"));
    assert_eq!(r.result, Some(Outcome::Del(DelResult { existed: true })));
    let r = h.apply(0, del("a"));
    assert_eq!(r.result, Some(Outcome::Del(DelResult { existed: false })));
    assert_eq!(h.get("a", 0), None);
}

#[test]
fn incr_counts_from_zero_and_keeps_going() {
    let mut h = Harness::new();
    assert_eq!(incr_value(&h.apply(0, incr("n"))), 1);
    assert_eq!(incr_value(&h.apply(0, incr("n"))), 2);
    assert_eq!(h.get("n", 0), Some("2".into()));
    h.apply(0, set("m", "-5"));
    assert_eq!(incr_value(&h.apply(0, incr("m"))), -4);
}

#[test]
fn incr_on_text_is_refused_and_changes_nothing() {
    let mut h = Harness::new();
    h.apply(0, set("t", "hello"));
    h.apply(0, expire("t", 100));
    let before = h.sm.snapshot();
    let r = h.apply(0, incr("t"));
    assert_eq!(error_code(&r), Code::NotAnInteger);
    assert_eq!(h.get("t", 0), Some("hello".into()));
    assert_eq!(h.ttl("t", 0).seconds, Some(100));
    // Only the applied index moved.
    let mut expected = StateMachine::restore(Limits::default(), &before).unwrap();
    expected.applied_index = h.sm.applied_index();
    assert_eq!(h.sm, expected);
    for text in ["", " 1", "+1", "1.5", "0x10"] {
        h.apply(0, set("t", text));
        assert_eq!(
            error_code(&h.apply(0, incr("t"))),
            Code::NotAnInteger,
            "{text:?}"
        );
        assert_eq!(h.get("t", 0).as_deref(), Some(text));
    }
}

#[test]
fn incr_overflow_is_refused() {
    let mut h = Harness::new();
    h.apply(0, set("n", &i64::MAX.to_string()));
    assert_eq!(error_code(&h.apply(0, incr("n"))), Code::Overflow);
    assert_eq!(h.get("n", 0), Some(i64::MAX.to_string()));
    h.apply(0, set("n", &i64::MIN.to_string()));
    assert_eq!(
        h.apply(0, incr("n")).result,
        Some(Outcome::Incr(IncrResult {
            value: i64::MIN + 1
        }))
    );
}

#[test]
fn incr_keeps_expiry_set_clears_it() {
    let mut h = Harness::new();
    h.apply(0, set("n", "1"));
    h.apply(0, expire("n", 10));
    h.apply(0, incr("n"));
    assert_eq!(h.ttl("n", 0).seconds, Some(10));
    h.apply(0, set("n", "1"));
    let ttl = h.ttl("n", 0);
    assert!(ttl.found);
    assert_eq!(ttl.seconds, None);
    assert_eq!(h.get("n", 1_000_000), Some("1".into()));
}

#[test]
fn expire_on_missing_key_is_not_applied() {
    let mut h = Harness::new();
    let r = h.apply(0, expire("x", 5));
    assert_eq!(
        r.result,
        Some(Outcome::Expire(ExpireResult { applied: false }))
    );
    assert!(h.sm.is_empty());
}

#[test]
fn expire_zero_deletes_now() {
    let mut h = Harness::new();
    h.apply(500, set("x", "v"));
    let r = h.apply(500, expire("x", 0));
    assert_eq!(
        r.result,
        Some(Outcome::Expire(ExpireResult { applied: true }))
    );
    assert_eq!(h.get("x", 0), None);
    assert!(h.sm.is_empty());
}

#[test]
fn cas_semantics() {
    let mut h = Harness::new();
    let swapped = |v: &str| {
        Some(Outcome::Cas(CasResult {
            swapped: true,
            current: Some(b(v)),
        }))
    };
    // Absent expected: the key must not exist.
    assert_eq!(h.apply(0, cas("k", None, "1")).result, swapped("1"));
    assert_eq!(
        h.apply(0, cas("k", None, "2")).result,
        Some(Outcome::Cas(CasResult {
            swapped: false,
            current: Some(b("1")),
        }))
    );
    // Wrong expected value: no swap, reports the current value.
    assert_eq!(
        h.apply(0, cas("k", Some("9"), "2")).result,
        Some(Outcome::Cas(CasResult {
            swapped: false,
            current: Some(b("1")),
        }))
    );
    assert_eq!(h.apply(0, cas("k", Some("1"), "2")).result, swapped("2"));
    assert_eq!(h.get("k", 0), Some("2".into()));
    // Expected a value on a missing key: no swap, current absent.
    assert_eq!(
        h.apply(0, cas("gone", Some("1"), "2")).result,
        Some(Outcome::Cas(CasResult {
            swapped: false,
            current: None,
        }))
    );
    assert_eq!(h.get("gone", 0), None);
    // An empty expected value is a value, distinct from "absent".
    h.apply(0, set("e", ""));
    assert_eq!(
        h.apply(0, cas("e", None, "x")).result,
        Some(Outcome::Cas(CasResult {
            swapped: false,
            current: Some(Bytes::new()),
        }))
    );
    assert_eq!(h.apply(0, cas("e", Some(""), "x")).result, swapped("x"));
}

#[test]
fn cas_clears_expiry_like_set() {
    let mut h = Harness::new();
    h.apply(0, set("k", "1"));
    h.apply(0, expire("k", 10));
    h.apply(0, cas("k", Some("1"), "2"));
    assert_eq!(h.ttl("k", 0).seconds, None);
}

#[test]
fn register_returns_the_entry_index() {
    let mut h = Harness::new();
    h.apply(0, set("a", "1"));
    h.apply(0, set("b", "1"));
    assert_eq!(h.register(0), 3);
    assert_eq!(h.register(0), 4);
}

#[test]
fn malformed_entries_are_refused_and_change_nothing() {
    let mut h = Harness::new();
    h.apply(0, set("a", "1"));
    let before = h.sm.clone();
    for bytes in [&[0xff, 0xff, 0xff][..], &[0x0a, 0x05, 0x01]] {
        let r = h.apply_raw(bytes);
        assert_eq!(error_code(&r), Code::Invalid);
    }
    // A proposal without a command is a time entry (no answer; with an old
    // stamp it changes nothing); one with an empty command is refused.
    let no_command = Proposal {
        session: None,
        stamp_ms: 0,
        command: None,
        user: String::new(),
    };
    assert_eq!(h.apply_raw(&no_command.encode_to_vec()).result, None);
    let empty = Proposal {
        session: None,
        stamp_ms: 0,
        command: Some(Command { op: None }),
        user: String::new(),
    };
    assert_eq!(
        error_code(&h.apply_raw(&empty.encode_to_vec())),
        Code::Invalid
    );
    let mut expected = before;
    expected.applied_index = h.sm.applied_index();
    assert_eq!(h.sm, expected);
}

#[test]
fn reapplying_an_index_is_refused() {
    let mut h = Harness::new();
    h.apply(0, set("a", "1"));
    let before = h.sm.clone();
    let r = h.sm.apply(1, &encode(None, 0, set("a", "2")));
    assert_eq!(error_code(&r), Code::Invalid);
    assert_eq!(h.sm, before);
}
