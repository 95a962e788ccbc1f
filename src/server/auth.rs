//! Authentication and the fast permission checks of the client port
//! (docs/security.md, "Users and roles").
//!
//! The node loop publishes its applied auth store and cluster time after
//! every batch ([`AuthPublisher`]); handlers read them without asking the
//! loop ([`AuthView`]). A request is authenticated by a token (metadata
//! `authorization` or `token`) or, with `--client-cert-auth`, by the common
//! name of its client certificate. Writes are checked again, for good, when
//! the state machine applies them.

use super::node::{NodeError, NodeHandle};
use crate::kv::{Auth, Need, StateMachine};
use crate::pb;
use crate::tls::PeerCerts;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

/// How long a token is valid, in cluster time.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// The metadata keys a token may come in (etcd's `token`, and the usual one).
pub const TOKEN_KEYS: [&str; 2] = ["authorization", "token"];

/// Sets what handlers read: called by the node loop after applying.
pub struct AuthPublisher {
    store: watch::Sender<Arc<Auth>>,
    time_ms: Arc<AtomicU64>,
}

/// The applied auth store and cluster time, as the node loop published them.
#[derive(Clone)]
pub struct AuthView {
    store: watch::Receiver<Arc<Auth>>,
    time_ms: Arc<AtomicU64>,
    /// `--client-cert-auth`: a client certificate's common name names the user.
    client_cert_auth: bool,
}

/// A publisher and a view of `sm`'s auth store.
pub fn channel(sm: &StateMachine, client_cert_auth: bool) -> (AuthPublisher, AuthView) {
    let (tx, rx) = watch::channel(Arc::new(sm.auth().clone()));
    let time_ms = Arc::new(AtomicU64::new(sm.time_ms()));
    let publisher = AuthPublisher {
        store: tx,
        time_ms: time_ms.clone(),
    };
    let view = AuthView {
        store: rx,
        time_ms,
        client_cert_auth,
    };
    (publisher, view)
}

impl AuthPublisher {
    /// Publishes `sm`'s cluster time, and its auth store if it changed.
    pub fn publish(&self, sm: &StateMachine) {
        self.time_ms.store(sm.time_ms(), Ordering::Relaxed);
        let auth = sm.auth();
        let changed = {
            let current = self.store.borrow();
            current.revision() != auth.revision() || current.enabled() != auth.enabled()
        };
        if changed {
            self.store.send_replace(Arc::new(auth.clone()));
        }
    }
}

/// Who sent a request (empty: nobody).
pub type User = String;

impl AuthView {
    pub fn store(&self) -> Arc<Auth> {
        self.store.borrow().clone()
    }

    /// The user `r` authenticates as: by token, else by client certificate
    /// (with `--client-cert-auth`), else nobody. Nobody while auth is off.
    pub fn authenticate<T>(&self, r: &Request<T>) -> Result<User, Status> {
        let auth = self.store();
        if !auth.enabled() {
            return Ok(User::new());
        }
        let token = TOKEN_KEYS
            .iter()
            .find_map(|k| r.metadata().get(*k))
            .map(|v| v.to_str().unwrap_or_default());
        if let Some(token) = token {
            let token = token.strip_prefix("Bearer ").unwrap_or(token);
            let now = self.time_ms.load(Ordering::Relaxed);
            return verify_token(&auth, token, now).map_err(|why| {
                Status::unauthenticated(format!("invalid auth token: {why}; authenticate again"))
            });
        }
        if self.client_cert_auth
            && let Some(leaf) = r
                .extensions()
                .get::<PeerCerts>()
                .and_then(|p| p.chain.first())
            && let Some(cn) = crate::tls::identity::common_name(leaf)
        {
            if auth.user(&cn).is_none() {
                return Err(Status::unauthenticated(format!(
                    "the client certificate names user {cn:?}, which does not exist"
                )));
            }
            return Ok(cn);
        }
        Ok(User::new())
    }

    /// Refuses unless `user` may do what `need` says, on the applied store:
    /// UNAUTHENTICATED for nobody, PERMISSION_DENIED for a user.
    pub fn check(&self, user: &str, need: Need<'_>) -> Result<(), Status> {
        self.store()
            .check(user, need)
            .map_err(|e| denied_status(user, &e.message))
    }

    /// [`AuthView::authenticate`], then [`AuthView::check`]; a refusal
    /// on a follower is a redirect ([`leader_decides`]).
    pub async fn admit<T>(
        &self,
        node: &NodeHandle,
        r: &Request<T>,
        need: Need<'_>,
    ) -> Result<User, Status> {
        let checked = self
            .authenticate(r)
            .and_then(|user| self.check(&user, need).map(|()| user));
        match checked {
            Ok(user) => Ok(user),
            Err(refusal) => Err(leader_decides(node, refusal).await),
        }
    }
}

/// `refusal` (of a request checked against this node's applied store), or
/// a redirect to the leader if this node is not it: a follower's store may
/// lag (a user or grant just added), so only the leader refuses for good.
pub async fn leader_decides(node: &NodeHandle, refusal: Status) -> Status {
    match node.status().await {
        Ok(s) if s.role != "leader" => super::grpc::to_status(NodeError::NotLeader {
            leader: s.leader.map(|id| (id, s.leader_address)),
        }),
        _ => refusal,
    }
}

/// The status of a refusal of `user`'s request.
pub fn denied_status(user: &str, why: &str) -> Status {
    if user.is_empty() {
        Status::unauthenticated(why.to_string())
    } else {
        Status::permission_denied(why.to_string())
    }
}

/// What a client's command needs before it is proposed: what applying it
/// needs, and root for a state check.
pub fn need_to_propose(command: &pb::Command) -> Need<'_> {
    match command.op {
        Some(pb::command::Op::StateCheck(_)) => Need::Root,
        _ => Need::of(command),
    }
}

/// Replaces a password in an auth command by its hash and draws the
/// signing key of `auth enable` (neither is deterministic, so it happens
/// here, before proposing). Hashing runs off the event loop.
pub async fn prepare(command: &mut pb::Command) -> Result<(), Status> {
    use pb::auth_cmd::Op;
    let Some(pb::command::Op::Auth(auth)) = &mut command.op else {
        return Ok(());
    };
    match &mut auth.op {
        Some(Op::UserAdd(c) | Op::UserPasswd(c)) => {
            if !c.password_hash.is_empty() {
                return Err(Status::invalid_argument(
                    "send a password; the node hashes it",
                ));
            }
            if c.password.is_empty() {
                return Err(Status::invalid_argument("a password is required"));
            }
            let password = std::mem::take(&mut c.password);
            c.password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
                .await
                .map_err(|e| Status::internal(format!("password hashing failed: {e}")))??;
        }
        Some(Op::Enable(c)) => {
            let mut key = vec![0; crate::kv::SIGNING_KEY_BYTES];
            rand::rng().fill_bytes(&mut key);
            c.signing_key = key.into();
        }
        _ => {}
    }
    Ok(())
}

/// An argon2id PHC string of `password` with a random salt.
pub fn hash_password(password: &str) -> Result<String, Status> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| Status::internal(e.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Status::internal(format!("password hashing failed: {e}")))
}

fn password_matches(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

fn mac(key: &[u8], user: &str, revision: u64, expires_ms: u64) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"raftkv token 1\0");
    mac.update(user.as_bytes());
    mac.update(&revision.to_le_bytes());
    mac.update(&expires_ms.to_le_bytes());
    mac
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A token for `user`, whose password was set at `revision`, valid until
/// cluster time `expires_ms`: `user.revision.expiry.mac`, user in hex.
pub fn make_token(auth: &Auth, user: &str, revision: u64, expires_ms: u64) -> String {
    let tag = mac(auth.signing_key(), user, revision, expires_ms).finalize();
    format!(
        "{}.{revision}.{expires_ms}.{}",
        hex(user.as_bytes()),
        hex(&tag.into_bytes())
    )
}

/// The user a token names, if it is signed with the current key, not
/// expired at cluster time `now_ms`, and the user's password is unchanged.
pub fn verify_token(auth: &Auth, token: &str, now_ms: u64) -> Result<User, &'static str> {
    let parts: Vec<&str> = token.split('.').collect();
    let [user, revision, expires, tag] = parts[..] else {
        return Err("malformed");
    };
    let user = unhex(user)
        .and_then(|u| String::from_utf8(u).ok())
        .ok_or("malformed")?;
    let revision: u64 = revision.parse().map_err(|_| "malformed")?;
    let expires_ms: u64 = expires.parse().map_err(|_| "malformed")?;
    let tag = unhex(tag).ok_or("malformed")?;
    mac(auth.signing_key(), &user, revision, expires_ms)
        .verify_slice(&tag)
        .map_err(|_| "bad signature (signed before auth was last enabled?)")?;
    if expires_ms <= now_ms {
        return Err("expired");
    }
    match auth.user(&user) {
        Some(u) if u.password_revision == revision => Ok(user),
        _ => Err("the user was deleted or its password changed"),
    }
}

/// The Auth service: tokens, and the store for `raftctl user/role/auth`.
#[derive(Clone)]
pub struct AuthService {
    pub view: AuthView,
    pub node: NodeHandle,
}

#[tonic::async_trait]
impl pb::auth_server::Auth for AuthService {
    async fn authenticate(
        &self,
        r: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        let r = r.into_inner();
        let auth = self.view.store();
        if !auth.enabled() {
            // Nothing to prove: the client goes on without a token.
            return Ok(Response::new(pb::AuthenticateResponse::default()));
        }
        let wrong = || async {
            let refusal = Status::unauthenticated("wrong user name or password");
            leader_decides(&self.node, refusal).await
        };
        let Some(user) = auth.user(&r.user).cloned() else {
            return Err(wrong().await);
        };
        let hash = user.password_hash.clone();
        let ok = tokio::task::spawn_blocking(move || password_matches(&hash, &r.password))
            .await
            .map_err(|e| Status::internal(format!("password check failed: {e}")))?;
        if !ok {
            return Err(wrong().await);
        }
        let now = self.view.time_ms.load(Ordering::Relaxed);
        let expires_ms = now.saturating_add(TOKEN_LIFETIME.as_millis() as u64);
        let token = make_token(&auth, &r.user, user.password_revision, expires_ms);
        Ok(Response::new(pb::AuthenticateResponse {
            token,
            expires_ms,
        }))
    }

    /// Whether auth is on, and to root (or anyone while it is off) the users
    /// and roles.
    async fn status(
        &self,
        r: Request<pb::AuthStatusRequest>,
    ) -> Result<Response<pb::AuthStatusResponse>, Status> {
        let user = self.view.authenticate(&r)?;
        let auth = self.view.store();
        let mut status = auth.status();
        if auth.enabled() && !auth.is_root(&user) {
            status.users.clear();
            status.roles.clear();
        }
        status.user = user;
        Ok(Response::new(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::auth_cmd::Op;

    fn store() -> Auth {
        let mut sm = crate::kv::StateMachine::new(Default::default());
        let hash = hash_password("pw").unwrap();
        let ops = [
            Op::UserAdd(pb::UserAddCmd {
                name: "root".into(),
                password: String::new(),
                password_hash: hash,
            }),
            Op::UserGrant(pb::UserRoleCmd {
                user: "root".into(),
                role: "root".into(),
            }),
            Op::Enable(pb::AuthEnableCmd {
                signing_key: vec![1; 32].into(),
            }),
        ];
        for op in ops {
            sm.auth_mut().apply(pb::AuthCmd { op: Some(op) }).unwrap();
        }
        sm.auth().clone()
    }

    #[test]
    fn passwords_hash_and_verify() {
        let auth = store();
        let hash = &auth.user("root").unwrap().password_hash;
        assert!(hash.starts_with("$argon2id$"));
        assert!(password_matches(hash, "pw"));
        assert!(!password_matches(hash, "wrong"));
        assert_ne!(hash_password("pw").unwrap(), *hash, "salted");
    }

    #[test]
    fn tokens_verify_until_they_expire_or_the_password_changes() {
        let auth = store();
        let rev = auth.user("root").unwrap().password_revision;
        let token = make_token(&auth, "root", rev, 5_000);
        assert_eq!(verify_token(&auth, &token, 4_999), Ok("root".to_string()));
        assert_eq!(verify_token(&auth, &token, 5_000), Err("expired"));
        let stale = make_token(&auth, "root", rev - 1, 5_000);
        assert!(verify_token(&auth, &stale, 0).is_err());
        let mut forged = token.clone();
        forged.replace_range(forged.len() - 2.., "00");
        assert!(verify_token(&auth, &forged, 0).is_err());
        let other_name = token.replacen(&hex(b"root"), &hex(b"toor"), 1);
        assert!(verify_token(&auth, &other_name, 0).is_err());
        assert_eq!(verify_token(&auth, "x.y", 0), Err("malformed"));
    }
}
