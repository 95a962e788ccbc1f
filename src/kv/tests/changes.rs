//! Membership changes through a session (docs/consensus.md, "Membership
//! changes, exactly once"): the answer is kept when the config entry is
//! applied, and a retry is answered with it.

use super::*;
use crate::pb::ChangeContext;

fn context(client: u64, seq: u64, first_incomplete: u64) -> ChangeContext {
    ChangeContext {
        session: Some(Session {
            client_id: client,
            seq,
            first_incomplete,
        }),
        user: String::new(),
    }
}

/// Applies a config entry with `context` at the next index; that index.
fn apply_change(h: &mut Harness, context: &[u8]) -> u64 {
    let index = h.next_index;
    h.next_index += 1;
    h.sm.change_applied(index, context);
    if let Err(broken) = h.sm.check_invariants() {
        panic!("after config entry {index}: {broken}");
    }
    index
}

#[test]
fn a_retry_of_an_applied_change_gets_its_index() {
    let mut h = Harness::new();
    let c = h.register(0);
    let ctx = context(c, 1, 1);
    assert_eq!(
        h.sm.admit_change(&ctx),
        Ok(None),
        "a new change is proposed"
    );
    let index = apply_change(&mut h, &ctx.encode_to_vec());
    assert_eq!(h.sm.admit_change(&ctx), Ok(Some(index)));
    // Applied again (a second entry for it, which a leader never proposes):
    // the first answer stays.
    apply_change(&mut h, &ctx.encode_to_vec());
    assert_eq!(h.sm.admit_change(&ctx), Ok(Some(index)));
    // Snapshots carry the answer to the next leader.
    let restored = StateMachine::restore(Limits::default(), &h.sm.snapshot()).unwrap();
    assert_eq!(restored.admit_change(&ctx), Ok(Some(index)));
    // The session's next request is new.
    assert_eq!(h.sm.admit_change(&context(c, 2, 2)), Ok(None));
}

#[test]
fn a_write_number_is_not_a_change_and_an_acknowledged_change_is_gone() {
    let mut h = Harness::new();
    let c = h.register(0);
    h.apply_as(c, 1, 1, 0, set("k", "v"));
    let e = h.sm.admit_change(&context(c, 1, 1)).unwrap_err();
    assert_eq!(e.code(), Code::Invalid, "{e:?}");
    assert!(e.message.contains("was a write"), "{e:?}");

    apply_change(&mut h, &context(c, 2, 2).encode_to_vec());
    // Request 3 acknowledges the change's answer: a retry of it is refused
    // as expired, never evaluated again.
    h.apply_as(c, 3, 3, 0, set("k", "w"));
    let e = h.sm.admit_change(&context(c, 2, 2)).unwrap_err();
    assert_eq!(e.code(), Code::SessionExpired, "{e:?}");
}

#[test]
fn without_a_known_session_nothing_is_kept() {
    let mut h = Harness::new();
    let e = h.sm.admit_change(&context(99, 1, 1)).unwrap_err();
    assert_eq!(e.code(), Code::SessionExpired, "{e:?}");
    let before = h.sm.clone();
    // No context, an undecodable one, client 0, an unknown client: the
    // entry changes the membership only, alike on every replica.
    for bytes in [
        Vec::new(),
        vec![0xff, 0xff, 0xff],
        context(0, 1, 1).encode_to_vec(),
        context(99, 1, 1).encode_to_vec(),
    ] {
        apply_change(&mut h, &bytes);
    }
    assert_eq!(h.sm, before);
    let none = ChangeContext::default();
    assert_eq!(h.sm.admit_change(&none), Ok(None));
}
