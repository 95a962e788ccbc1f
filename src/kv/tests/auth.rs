//! Users, roles and permissions checked when entries are applied.

use super::*;
use crate::kv::Need;
use crate::pb::auth_cmd::Op as A;
use crate::pb::{AuthCmd, Permission, RoleGrantCmd, RoleNameCmd, UserAddCmd, UserRoleCmd};

const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";

fn auth(op: A) -> Op {
    Op::Auth(AuthCmd { op: Some(op) })
}

fn user_add(name: &str) -> Op {
    auth(A::UserAdd(UserAddCmd {
        name: name.into(),
        password: String::new(),
        password_hash: HASH.into(),
    }))
}

fn grant_user(user: &str, role: &str) -> Op {
    auth(A::UserGrant(UserRoleCmd {
        user: user.into(),
        role: role.into(),
    }))
}

fn grant_role(role: &str, prefix: &str, permission: Permission) -> Op {
    auth(A::RoleGrant(RoleGrantCmd {
        role: role.into(),
        prefix: b(prefix),
        permission: permission as i32,
    }))
}

fn enable() -> Op {
    auth(A::Enable(crate::pb::AuthEnableCmd {
        signing_key: Bytes::from(vec![7; 32]),
    }))
}

impl Harness {
    /// Applies `op` as `user` (what the node puts into the proposal).
    fn apply_by(&mut self, user: &str, op: Op) -> WriteResponse {
        let proposal = Proposal {
            session: None,
            stamp_ms: 1_000,
            command: Some(Command { op: Some(op) }),
            user: user.into(),
        };
        self.apply_raw(&proposal.encode_to_vec())
    }
}

fn code(r: &WriteResponse) -> Option<Code> {
    match &r.result {
        Some(Outcome::Error(e)) => Some(e.code()),
        _ => None,
    }
}

/// Root, and a user "reader" holding role "ro" (READ on "app/"), auth on.
fn secured() -> Harness {
    let mut h = Harness::new();
    for op in [
        user_add("root"),
        grant_user("root", "root"),
        user_add("reader"),
        auth(A::RoleAdd(RoleNameCmd { name: "ro".into() })),
        grant_role("ro", "app/", Permission::Read),
        grant_user("reader", "ro"),
        enable(),
    ] {
        let r = h.apply(1_000, op);
        assert_eq!(code(&r), None, "{r:?}");
    }
    assert!(h.sm.auth().enabled());
    h
}

#[test]
fn enable_without_root_is_refused_and_changes_nothing() {
    let mut h = Harness::new();
    assert_eq!(code(&h.apply(1_000, enable())), Some(Code::Invalid));
    h.apply(1_000, user_add("root"));
    let before = h.sm.auth().clone();
    assert_eq!(code(&h.apply(1_000, enable())), Some(Code::Invalid));
    assert_eq!(*h.sm.auth(), before);
    assert!(!h.sm.auth().enabled());
}

#[test]
fn a_password_never_enters_the_state() {
    let mut h = Harness::new();
    let op = auth(A::UserAdd(UserAddCmd {
        name: "u".into(),
        password: "secret".into(),
        password_hash: String::new(),
    }));
    assert_eq!(code(&h.apply(1_000, op)), Some(Code::Invalid));
    assert!(h.sm.auth().user("u").is_none());
}

#[test]
fn denied_write_changes_nothing() {
    let mut h = secured();
    h.apply_by("root", set("app/k", "v"));
    let before = h.sm.clone();
    let r = h.apply_by("reader", set("app/k", "w"));
    assert_eq!(code(&r), Some(Code::PermissionDenied));
    assert_eq!(h.sm.get(b"app/k").value, b("v"));
    assert_eq!(h.sm.len(), before.len());
    assert_eq!(h.sm.time_ms(), before.time_ms());
    assert_eq!(h.sm.auth(), before.auth());
    // Unauthenticated, and outside the prefix, too.
    assert_eq!(
        code(&h.apply_by("", set("app/k", "w"))),
        Some(Code::PermissionDenied)
    );
    assert_eq!(
        code(&h.apply_by("reader", incr("app/n"))),
        Some(Code::PermissionDenied),
        "INCR needs READWRITE"
    );
    assert!(
        h.sm.auth()
            .check("reader", Need::Key(b"app/k", Permission::Read))
            .is_ok()
    );
    assert!(
        h.sm.auth()
            .check("reader", Need::Key(b"other", Permission::Read))
            .is_err()
    );
    assert!(
        h.sm.auth()
            .check("reader", Need::Key(b"app", Permission::Read))
            .is_err()
    );
    // Admin needs root.
    assert_eq!(
        code(&h.apply_by("reader", user_add("x"))),
        Some(Code::PermissionDenied)
    );
    assert!(h.sm.auth().user("x").is_none());
}

#[test]
fn grants_and_revokes_take_effect_at_their_index() {
    let mut h = secured();
    h.apply_by("root", grant_role("ro", "app/", Permission::Readwrite));
    assert_eq!(code(&h.apply_by("reader", set("app/k", "1"))), None);
    assert_eq!(code(&h.apply_by("reader", incr("app/n"))), None);
    let revoke = auth(A::UserRevoke(UserRoleCmd {
        user: "reader".into(),
        role: "ro".into(),
    }));
    assert_eq!(code(&h.apply_by("root", revoke)), None);
    assert_eq!(
        code(&h.apply_by("reader", set("app/k", "2"))),
        Some(Code::PermissionDenied)
    );
    assert_eq!(h.sm.get(b"app/k").value, b("1"));
}

#[test]
fn root_cannot_lock_itself_out_and_disable_needs_root() {
    let mut h = secured();
    let revoke = auth(A::UserRevoke(UserRoleCmd {
        user: "root".into(),
        role: "root".into(),
    }));
    assert_eq!(code(&h.apply_by("root", revoke)), Some(Code::Invalid));
    let disable = || auth(A::Disable(crate::pb::AuthDisableCmd {}));
    assert_eq!(
        code(&h.apply_by("reader", disable())),
        Some(Code::PermissionDenied)
    );
    assert_eq!(code(&h.apply_by("root", disable())), None);
    assert!(!h.sm.auth().enabled());
    assert_eq!(code(&h.apply_by("", set("k", "v"))), None, "auth off: open");
}

#[test]
fn a_session_belongs_to_its_user() {
    let mut h = secured();
    h.apply_by("root", grant_role("ro", "", Permission::Readwrite));
    let register = Proposal {
        session: None,
        stamp_ms: 1_000,
        command: Some(Command {
            op: Some(register()),
        }),
        user: "reader".into(),
    };
    let Some(Outcome::Register(r)) = h.apply_raw(&register.encode_to_vec()).result else {
        panic!("register refused");
    };
    let write = |user: &str, seq| Proposal {
        session: Some(Session {
            client_id: r.client_id,
            seq,
            first_incomplete: 0,
        }),
        stamp_ms: 1_000,
        command: Some(Command {
            op: Some(incr("n")),
        }),
        user: user.into(),
    };
    let first = h.apply_raw(&write("reader", 1).encode_to_vec());
    assert_eq!(code(&first), None);
    let retry = h.apply_raw(&write("reader", 1).encode_to_vec());
    assert_eq!(retry, first, "exactly once for its user");
    let other = h.apply_raw(&write("root", 2).encode_to_vec());
    assert_eq!(code(&other), Some(Code::PermissionDenied));
    assert_eq!(h.sm.get(b"n").value, b("1"));
}

#[test]
fn snapshot_and_hash_cover_the_auth_state() {
    let h = secured();
    let data = h.sm.snapshot();
    let restored = StateMachine::restore(Limits::default(), &data).unwrap();
    assert_eq!(restored, h.sm);
    assert_eq!(restored.auth(), h.sm.auth());
    assert_eq!(restored.state_hash(), h.sm.state_hash());
    // The same log but one grant fewer hashes differently.
    let mut other = secured();
    let mut same = secured();
    other.apply_by("root", grant_role("ro", "b/", Permission::Read));
    same.apply_by("root", grant_role("ro", "app/", Permission::Read));
    assert_eq!(other.sm.applied_index(), same.sm.applied_index());
    assert_ne!(other.sm.state_hash(), same.sm.state_hash());
}

#[test]
fn states_without_auth_encode_as_before() {
    let mut h = Harness::new();
    h.apply(1_000, set("k", "v"));
    assert!(h.sm.auth().record().is_none());
    let restored = StateMachine::restore(Limits::default(), &h.sm.snapshot()).unwrap();
    assert!(!restored.auth().enabled());
}
