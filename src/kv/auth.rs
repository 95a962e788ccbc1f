//! Users, roles and per-prefix permissions (etcd's model), part of the
//! replicated state so every replica decides a request the same way at the
//! same log position (docs/security.md, "Users and roles").
//!
//! Only password hashes (argon2 PHC strings) and the token signing key are
//! kept: the node that receives a request hashes the password and draws the
//! key before proposing, because neither is deterministic.

use super::error::{invalid, kv_error};
use crate::pb::auth_cmd::Op as AuthOp;
use crate::pb::command::Op;
use crate::pb::kv_error::Code;
use crate::pb::{self, KvError, Permission};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};

/// The built-in role that grants everything, and the user `auth enable`
/// requires.
pub const ROOT: &str = "root";

/// Shortest token signing key `auth enable` accepts.
pub const SIGNING_KEY_BYTES: usize = 32;

/// The auth store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Auth {
    enabled: bool,
    users: BTreeMap<String, User>,
    /// Every role but the built-in `root`.
    roles: BTreeMap<String, BTreeMap<Bytes, Permission>>,
    signing_key: Bytes,
    /// Counts applied changes; a user's password is stamped with it.
    revision: u64,
}

/// One user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub password_hash: String,
    /// The revision that set the password. Tokens name it, so a new
    /// password (or the user deleted and added again) voids older tokens.
    pub password_revision: u64,
    pub roles: BTreeSet<String>,
}

/// What a request needs of its user when auth is enabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need<'a> {
    /// Internal entries (the leader's own proposals).
    Nothing,
    /// Any existing user.
    User,
    /// A permission on every key starting with these bytes.
    Key(&'a [u8], Permission),
    /// The `root` role.
    Root,
}

impl<'a> Need<'a> {
    /// What applying `command` needs. The node asks more of some commands
    /// before proposing them (a client's state check needs root).
    pub fn of(command: &'a pb::Command) -> Need<'a> {
        match &command.op {
            Some(Op::Set(c)) => Need::Key(&c.key, Permission::Write),
            Some(Op::Del(c)) => Need::Key(&c.key, Permission::Write),
            Some(Op::Expire(c)) => Need::Key(&c.key, Permission::Write),
            Some(Op::Incr(c)) => Need::Key(&c.key, Permission::Readwrite),
            Some(Op::Cas(c)) => Need::Key(&c.key, Permission::Readwrite),
            Some(Op::Register(_)) => Need::User,
            Some(Op::Auth(_)) => Need::Root,
            Some(Op::MemberAddrs(_) | Op::StateCheck(_) | Op::StateReport(_)) | None => {
                Need::Nothing
            }
        }
    }
}

pub(crate) fn denied(message: impl Into<String>) -> KvError {
    kv_error(Code::PermissionDenied, message)
}

fn covers(granted: Permission, need: Permission) -> bool {
    (granted as i32) & (need as i32) == need as i32
}

/// A user or role name: printable, no ':' (raftctl's `--user NAME:PASSWORD`).
fn check_name(what: &str, name: &str) -> Result<(), KvError> {
    if name.is_empty() || name.len() > 128 {
        return Err(invalid(format!("{what} name must be 1 to 128 bytes")));
    }
    if name
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == ':')
    {
        return Err(invalid(format!(
            "{what} name {name:?} has a space, a control character or ':'"
        )));
    }
    Ok(())
}

impl Auth {
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn signing_key(&self) -> &[u8] {
        &self.signing_key
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// Whether `user` exists and holds the `root` role.
    pub fn is_root(&self, user: &str) -> bool {
        self.users.get(user).is_some_and(|u| u.roles.contains(ROOT))
    }

    /// Whether a permission of `user` on a prefix of `key` covers `need`
    /// (read and write may come from different grants).
    fn allows(&self, user: &User, key: &[u8], need: Permission) -> bool {
        let one = |bit: Permission| {
            user.roles.iter().any(|r| {
                self.roles.get(r).is_some_and(|perms| {
                    perms
                        .iter()
                        .any(|(prefix, p)| key.starts_with(prefix) && covers(*p, bit))
                })
            })
        };
        [Permission::Read, Permission::Write]
            .into_iter()
            .filter(|bit| covers(need, *bit))
            .all(one)
    }

    /// Refuses with `PERMISSION_DENIED` unless `user` (empty: nobody) may do
    /// what `need` says. Everything is allowed while auth is disabled.
    pub fn check(&self, user: &str, need: Need<'_>) -> Result<(), KvError> {
        if !self.enabled || need == Need::Nothing {
            return Ok(());
        }
        if user.is_empty() {
            return Err(denied("auth is enabled: authenticate first"));
        }
        let Some(u) = self.users.get(user) else {
            return Err(denied(format!("user {user:?} does not exist")));
        };
        if u.roles.contains(ROOT) {
            return Ok(());
        }
        match need {
            Need::Nothing | Need::User => Ok(()),
            Need::Root => Err(denied(format!("user {user:?} does not have the root role"))),
            Need::Key(key, p) if self.allows(u, key, p) => Ok(()),
            Need::Key(key, p) => Err(denied(format!(
                "user {user:?} has no {} permission on {:?}",
                p.as_str_name(),
                String::from_utf8_lossy(key)
            ))),
        }
    }

    /// Applies a change (its user already checked: root once enabled).
    pub fn apply(&mut self, cmd: pb::AuthCmd) -> Result<pb::AuthResult, KvError> {
        let Some(op) = cmd.op else {
            return Err(invalid("auth change without an operation"));
        };
        self.change(op)?;
        self.revision += 1;
        Ok(pb::AuthResult {
            revision: self.revision,
        })
    }

    fn existing_user(&mut self, name: &str) -> Result<&mut User, KvError> {
        self.users
            .get_mut(name)
            .ok_or_else(|| invalid(format!("user {name:?} does not exist")))
    }

    fn existing_role(&mut self, name: &str) -> Result<&mut BTreeMap<Bytes, Permission>, KvError> {
        if name == ROOT {
            return Err(invalid("role root is built in: it grants everything"));
        }
        self.roles
            .get_mut(name)
            .ok_or_else(|| invalid(format!("role {name:?} does not exist")))
    }

    fn change(&mut self, op: AuthOp) -> Result<(), KvError> {
        let next = self.revision + 1;
        match op {
            AuthOp::UserAdd(c) => {
                check_name("user", &c.name)?;
                let (name, password_hash) = password_hash(c)?;
                if self.users.contains_key(&name) {
                    return Err(invalid(format!("user {name:?} already exists")));
                }
                let user = User {
                    password_hash,
                    password_revision: next,
                    roles: BTreeSet::new(),
                };
                self.users.insert(name, user);
            }
            AuthOp::UserDelete(c) => {
                if self.enabled && c.name == ROOT {
                    return Err(invalid("user root cannot be deleted while auth is enabled"));
                }
                self.existing_user(&c.name)?;
                self.users.remove(&c.name);
            }
            AuthOp::UserPasswd(c) => {
                let (name, hash) = password_hash(c)?;
                let user = self.existing_user(&name)?;
                user.password_hash = hash;
                user.password_revision = next;
            }
            AuthOp::UserGrant(c) => {
                if c.role != ROOT && !self.roles.contains_key(&c.role) {
                    return Err(invalid(format!("role {:?} does not exist", c.role)));
                }
                let user = self.existing_user(&c.user)?;
                if !user.roles.insert(c.role.clone()) {
                    return Err(invalid(format!(
                        "user {:?} already has role {:?}",
                        c.user, c.role
                    )));
                }
            }
            AuthOp::UserRevoke(c) => {
                if self.enabled && c.user == ROOT && c.role == ROOT {
                    return Err(invalid(
                        "the root role cannot be revoked from user root while auth is enabled",
                    ));
                }
                let user = self.existing_user(&c.user)?;
                if !user.roles.remove(&c.role) {
                    return Err(invalid(format!(
                        "user {:?} does not have role {:?}",
                        c.user, c.role
                    )));
                }
            }
            AuthOp::RoleAdd(c) => {
                check_name("role", &c.name)?;
                if c.name == ROOT || self.roles.contains_key(&c.name) {
                    return Err(invalid(format!("role {:?} already exists", c.name)));
                }
                self.roles.insert(c.name, BTreeMap::new());
            }
            AuthOp::RoleDelete(c) => {
                self.existing_role(&c.name)?;
                self.roles.remove(&c.name);
                for user in self.users.values_mut() {
                    user.roles.remove(&c.name);
                }
            }
            AuthOp::RoleGrant(c) => {
                let permission = match c.permission() {
                    Permission::None => {
                        return Err(invalid("grant read, write or readwrite"));
                    }
                    p => p,
                };
                self.existing_role(&c.role)?.insert(c.prefix, permission);
            }
            AuthOp::RoleRevoke(c) => {
                if self.existing_role(&c.role)?.remove(&c.prefix).is_none() {
                    return Err(invalid(format!(
                        "role {:?} has no permission on prefix {:?}",
                        c.role,
                        String::from_utf8_lossy(&c.prefix)
                    )));
                }
            }
            AuthOp::Enable(c) => {
                if !self.is_root(ROOT) {
                    return Err(invalid(
                        "auth enable needs a user root holding the root role \
                         (raftctl user add root; raftctl user grant root root)",
                    ));
                }
                if c.signing_key.len() < SIGNING_KEY_BYTES {
                    return Err(invalid("auth enable without a token signing key"));
                }
                self.enabled = true;
                self.signing_key = c.signing_key;
            }
            AuthOp::Disable(_) => {
                self.enabled = false;
                self.signing_key = Bytes::new();
            }
        }
        Ok(())
    }

    /// Users and roles as `raftctl user/role/auth` show them (no hashes, no key).
    pub fn status(&self) -> pb::AuthStatusResponse {
        let mut roles = vec![pb::RoleInfo {
            name: ROOT.into(),
            permissions: Vec::new(),
        }];
        roles.extend(self.roles.iter().map(|(name, perms)| pb::RoleInfo {
            name: name.clone(),
            permissions: permission_infos(perms),
        }));
        pb::AuthStatusResponse {
            enabled: self.enabled,
            revision: self.revision,
            users: self
                .users
                .iter()
                .map(|(name, u)| pb::UserInfo {
                    name: name.clone(),
                    roles: u.roles.iter().cloned().collect(),
                })
                .collect(),
            roles,
            user: String::new(),
        }
    }
}

/// The name and hash of an add or passwd: only a hash may be in the log.
fn password_hash(c: pb::UserAddCmd) -> Result<(String, String), KvError> {
    if !c.password.is_empty() {
        return Err(invalid(
            "a password must be hashed by the node before it is proposed",
        ));
    }
    if !c.password_hash.starts_with("$argon2") {
        return Err(invalid("the password hash is not an argon2 PHC string"));
    }
    Ok((c.name, c.password_hash))
}

fn permission_infos(perms: &BTreeMap<Bytes, Permission>) -> Vec<pb::PermissionInfo> {
    perms
        .iter()
        .map(|(prefix, p)| pb::PermissionInfo {
            prefix: prefix.clone(),
            permission: *p as i32,
        })
        .collect()
}

/// The auth store in snapshots and in the state hash.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct AuthRecord {
    #[prost(bool, tag = "1")]
    enabled: bool,
    #[prost(uint64, tag = "2")]
    revision: u64,
    #[prost(bytes = "bytes", tag = "3")]
    signing_key: Bytes,
    /// By ascending name.
    #[prost(message, repeated, tag = "4")]
    users: Vec<UserRecord>,
    /// By ascending name (not the built-in root).
    #[prost(message, repeated, tag = "5")]
    roles: Vec<pb::RoleInfo>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct UserRecord {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    password_hash: String,
    #[prost(uint64, tag = "3")]
    password_revision: u64,
    #[prost(string, repeated, tag = "4")]
    roles: Vec<String>,
}

impl Auth {
    /// `None` for the empty store, so states without auth encode and hash
    /// as before it existed.
    pub(crate) fn record(&self) -> Option<AuthRecord> {
        if *self == Auth::default() {
            return None;
        }
        Some(AuthRecord {
            enabled: self.enabled,
            revision: self.revision,
            signing_key: self.signing_key.clone(),
            users: self
                .users
                .iter()
                .map(|(name, u)| UserRecord {
                    name: name.clone(),
                    password_hash: u.password_hash.clone(),
                    password_revision: u.password_revision,
                    roles: u.roles.iter().cloned().collect(),
                })
                .collect(),
            roles: self
                .roles
                .iter()
                .map(|(name, perms)| pb::RoleInfo {
                    name: name.clone(),
                    permissions: permission_infos(perms),
                })
                .collect(),
        })
    }

    /// The store a snapshot recorded (absent: the empty store).
    pub(crate) fn from_record(record: Option<AuthRecord>) -> Result<Auth, KvError> {
        let Some(r) = record else {
            return Ok(Auth::default());
        };
        let mut auth = Auth {
            enabled: r.enabled,
            revision: r.revision,
            signing_key: r.signing_key,
            ..Auth::default()
        };
        for u in r.users {
            let user = User {
                password_hash: u.password_hash,
                password_revision: u.password_revision,
                roles: u.roles.into_iter().collect(),
            };
            if auth.users.insert(u.name.clone(), user).is_some() {
                return Err(invalid(format!("snapshot: user {:?} twice", u.name)));
            }
        }
        for role in r.roles {
            let perms = role
                .permissions
                .iter()
                .map(|p| (p.prefix.clone(), p.permission()))
                .collect();
            if auth.roles.insert(role.name.clone(), perms).is_some() {
                return Err(invalid(format!("snapshot: role {:?} twice", role.name)));
            }
        }
        if auth.enabled && (!auth.is_root(ROOT) || auth.signing_key.len() < SIGNING_KEY_BYTES) {
            return Err(invalid(
                "snapshot: auth is enabled without root or signing key",
            ));
        }
        Ok(auth)
    }

    /// Turns auth off (`raftctl snapshot restore --disable-auth`): users and
    /// roles stay, so it can be enabled again once root's password is reset.
    pub fn disable(&mut self) {
        if self.enabled {
            self.enabled = false;
            self.signing_key = Bytes::new();
            self.revision += 1;
        }
    }
}
