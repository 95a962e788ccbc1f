//! The Rust client of raftkv: finds the leader, follows not-leader
//! redirects, retries across leader changes under a deadline, and makes
//! writes exactly-once with a client session.
//!
//! ```no_run
//! # async fn demo() -> Result<(), raftkv::client::ClientError> {
//! use raftkv::client::{Client, ClientOptions};
//! let client = Client::connect(vec!["127.0.0.1:7379".into()], ClientOptions::default()).await?;
//! client.set(b"greeting", b"hello").await?;
//! assert_eq!(client.get(b"greeting").await?.as_deref(), Some(&b"hello"[..]));
//! # Ok(()) }
//! ```

mod auth;
mod backup;
mod cluster;
mod error;
mod failure;
mod kv;
mod options;
mod route;
mod session;
mod transport;

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use futures::future::select_ok;
use tokio::time::Instant;

pub use backup::{SnapshotDownload, SnapshotPiece};
pub use error::ClientError;
pub use kv::{CasOutcome, Ttl};
pub use options::{ClientOptions, Credentials};

use route::normalize_addr;
use session::Session;
use transport::Transport;

/// A connection to a raftkv cluster. Cheap to clone; clones share the
/// leader memory, the connections and the session, and may be used from
/// many tasks at once.
#[derive(Clone, Debug)]
pub struct Client {
    transport: Arc<Transport>,
    /// The session of this client, registered by the first write.
    session: Arc<tokio::sync::Mutex<Option<Arc<Session>>>>,
}

impl Client {
    /// Connects to the cluster through `endpoints` (`HOST:PORT` client
    /// addresses, any subset of the members): waits, within
    /// `options.timeout`, until one of them answers, and remembers the
    /// leader it names.
    pub async fn connect(
        endpoints: Vec<String>,
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        let client = Client::lazy(endpoints, options)?;
        client.discover().await?;
        Ok(client)
    }

    /// A client that contacts no node until its first request (for callers
    /// that start before the cluster does).
    pub fn lazy(endpoints: Vec<String>, options: ClientOptions) -> Result<Client, ClientError> {
        let mut normalized = Vec::new();
        for endpoint in &endpoints {
            let addr = normalize_addr(endpoint)
                .ok_or_else(|| ClientError::InvalidArgument("empty endpoint".into()))?;
            transport::endpoint(&addr, &options).map_err(ClientError::InvalidArgument)?;
            if !normalized.contains(&addr) {
                normalized.push(addr);
            }
        }
        if normalized.is_empty() {
            return Err(ClientError::InvalidArgument("no endpoints given".into()));
        }
        Ok(Client {
            transport: Arc::new(Transport::new(normalized, options)),
            session: Arc::new(tokio::sync::Mutex::new(None)),
        })
    }

    /// The endpoints this client was given (normalized to `HOST:PORT`).
    pub fn endpoints(&self) -> Vec<String> {
        self.transport.router().endpoints().to_vec()
    }

    /// The client address of the leader, as last learned.
    pub fn leader(&self) -> Option<String> {
        self.transport.router().leader().map(str::to_string)
    }

    /// The options this client was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.transport.options
    }

    /// The session id, once the first write has registered one.
    pub async fn session_id(&self) -> Option<u64> {
        self.session.lock().await.as_ref().map(|s| s.client_id)
    }

    /// Asks every endpoint for its status at once, retrying with backoff
    /// until one answers; remembers the leader it names.
    async fn discover(&self) -> Result<(), ClientError> {
        let deadline = Instant::now() + self.options().timeout;
        let mut backoff = transport::backoff(self.options());
        loop {
            let endpoints = self.endpoints();
            let probes = endpoints.iter().map(|endpoint| {
                Box::pin(async move { self.status(endpoint).await.map(|s| (endpoint, s)) })
            });
            match select_ok(probes).await {
                Ok(((endpoint, status), _)) => {
                    if status.role == "leader" {
                        self.transport.router().set_leader(endpoint);
                    } else if let Some(addr) = normalize_addr(&status.leader_address) {
                        self.transport.router().set_leader(&addr);
                    }
                    return Ok(());
                }
                Err(last) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(match last {
                            ClientError::Unreachable { last, .. } => ClientError::Unreachable {
                                endpoints: endpoints.join(","),
                                last,
                            },
                            other => other,
                        });
                    }
                    let delay = backoff.next().unwrap_or(self.options().max_backoff);
                    tokio::time::sleep(delay.min(left)).await;
                }
            }
        }
    }
}
