//! Tunables of a [`Client`](super::Client): deadlines, backoff and local size limits.

use std::time::Duration;

/// How a client retries and what it refuses before sending.
///
/// `Default` suits a local or in-cluster deployment: a leader change takes
/// about an election timeout, well inside the 10 s deadline.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Overall deadline of one operation, every redirect and retry included.
    pub timeout: Duration,
    /// Bound on one attempt against one node, so a hung (paused) node cannot
    /// eat the whole deadline before the client tries another.
    pub attempt_timeout: Duration,
    /// TCP connect timeout per node.
    pub connect_timeout: Duration,
    /// Fail fast when the cluster is down: once this long has passed and
    /// every endpoint has been tried without any node answering (refused,
    /// reset, silent), the operation fails as unreachable instead of
    /// retrying until `timeout`. `None` (the default, for callers that
    /// start before the cluster does) keeps retrying until `timeout`.
    pub dial_timeout: Option<Duration>,
    /// First backoff delay after a round of failures (grows exponentially, with jitter).
    pub min_backoff: Duration,
    /// Largest backoff delay.
    pub max_backoff: Duration,
    /// Keys longer than this are refused locally (the server's default limit).
    pub max_key_bytes: usize,
    /// Values longer than this are refused locally (the server's default limit).
    pub max_value_bytes: usize,
    /// TLS to the nodes' client ports (plaintext when `None`).
    pub tls: Option<crate::tls::ClientTls>,
    /// Who to authenticate as when the cluster has auth enabled
    /// (docs/security.md, "Users and roles").
    pub credentials: Option<Credentials>,
}

/// A user name and password; the client trades them for a token.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(1),
            dial_timeout: None,
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
            max_key_bytes: 4 * 1024,
            max_value_bytes: 1024 * 1024,
            tls: None,
            credentials: None,
        }
    }
}

impl ClientOptions {
    /// The same options with another overall deadline (the attempt timeout
    /// never exceeds it).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self.attempt_timeout = self.attempt_timeout.min(timeout);
        self
    }

    /// The same options failing after `dial` when no endpoint answers (as
    /// etcdctl's `--dial-timeout`); connecting to one node takes at most
    /// `dial` too.
    pub fn with_dial_timeout(mut self, dial: Duration) -> Self {
        self.dial_timeout = Some(dial);
        self.connect_timeout = self.connect_timeout.min(dial);
        self
    }
}
