//! Size limits: refused by `validate` and again by `apply`.

use super::*;

fn op_cmd(op: Op) -> Command {
    Command { op: Some(op) }
}

fn code(r: Result<(), crate::pb::KvError>) -> Option<Code> {
    r.err().map(|e| e.code())
}

#[test]
fn validate_checks_keys_and_values() {
    let sm = StateMachine::new(Limits::default());
    let big_key = "k".repeat(4097);
    let max_key = "k".repeat(4096);
    let big_value = "v".repeat((1 << 20) + 1);
    let max_value = "v".repeat(1 << 20);
    assert_eq!(code(sm.validate(&op_cmd(set(&max_key, &max_value)))), None);
    assert_eq!(
        code(sm.validate(&op_cmd(set("", "v")))),
        Some(Code::EmptyKey)
    );
    assert_eq!(code(sm.validate(&op_cmd(del("")))), Some(Code::EmptyKey));
    assert_eq!(
        code(sm.validate(&op_cmd(incr(&big_key)))),
        Some(Code::KeyTooLarge)
    );
    assert_eq!(
        code(sm.validate(&op_cmd(expire(&big_key, 1)))),
        Some(Code::KeyTooLarge)
    );
    assert_eq!(
        code(sm.validate(&op_cmd(set("k", &big_value)))),
        Some(Code::ValueTooLarge)
    );
    assert_eq!(
        code(sm.validate(&op_cmd(cas("k", Some(&big_value), "v")))),
        Some(Code::ValueTooLarge)
    );
    assert_eq!(
        code(sm.validate(&op_cmd(cas("k", None, &big_value)))),
        Some(Code::ValueTooLarge)
    );
    assert_eq!(code(sm.validate(&op_cmd(register()))), None);
    assert_eq!(
        code(sm.validate(&Command { op: None })),
        Some(Code::Invalid)
    );
    let e = sm.validate(&op_cmd(set(&big_key, "v"))).unwrap_err();
    assert_eq!(e.message, "the key is 4097 bytes; the limit is 4096 bytes");
}

#[test]
fn configured_limits_apply() {
    let limits = Limits {
        max_key_bytes: 2,
        max_value_bytes: 3,
        ..Limits::default()
    };
    let sm = StateMachine::new(limits);
    assert_eq!(code(sm.validate(&op_cmd(set("ab", "xyz")))), None);
    assert_eq!(
        code(sm.validate(&op_cmd(set("abc", "x")))),
        Some(Code::KeyTooLarge)
    );
    assert_eq!(
        code(sm.validate(&op_cmd(set("a", "wxyz")))),
        Some(Code::ValueTooLarge)
    );
}

#[test]
fn apply_refuses_over_limit_entries_and_changes_nothing() {
    let mut h = Harness {
        sm: StateMachine::new(Limits {
            max_key_bytes: 4,
            max_value_bytes: 4,
            ..Limits::default()
        }),
        next_index: 1,
    };
    h.apply(1_000, set("k", "v"));
    let c = h.register(1_000);
    let before = h.sm.clone();
    assert_eq!(error_code(&h.apply(50_000, set("", "v"))), Code::EmptyKey);
    assert_eq!(
        error_code(&h.apply(50_000, set("toolong", "v"))),
        Code::KeyTooLarge
    );
    let r = h.apply_as(c, 1, 1, 50_000, set("k", "toolong"));
    assert_eq!(error_code(&r), Code::ValueTooLarge);
    let mut expected = before;
    expected.applied_index = h.sm.applied_index();
    // Not even the clock moved.
    assert_eq!(h.sm, expected);
}
