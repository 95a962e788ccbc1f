//! Client sessions: exactly-once application of retried writes.
//!
//! This is the scheme of the Raft dissertation §6.3 with RIFL's
//! `first_incomplete` acknowledgement: each request carries
//! `(client_id, seq, first_incomplete)`; the state machine keeps the answer of
//! every request of the client at or above `first_incomplete` (the client has
//! seen every answer below it, so those are dropped). A retry of a request
//! whose answer is kept gets that answer back without being applied again.
//! A client may have several requests in flight, applied in any order.
//!
//! The table is bounded, and every choice is a function of the log alone so
//! that all replicas agree:
//! - a session expires after [`SESSION_TIMEOUT_MS`] of state-machine time
//!   (the leaders' stamps, not any local clock) without a request;
//! - at most [`MAX_SESSIONS`] sessions are kept; registering one more evicts
//!   the least recently active (ties broken by the lower client id);
//! - at most [`MAX_KEPT_RESPONSES`] answers are kept per client; recording one
//!   more forgets the lowest and raises that client's `first_incomplete`.
//!
//! Whatever was forgotten is answered with `SESSION_EXPIRED`, never by
//! applying a request a second time.

use super::error::{invalid, session_expired};
use crate::pb::{KvError, Session, WriteResponse};
use std::collections::{BTreeMap, BTreeSet};

/// A session with no request for this long (state-machine time) expires.
pub const SESSION_TIMEOUT_MS: u64 = 60 * 60 * 1000;
/// The most sessions kept; the least recently active is evicted beyond it.
pub const MAX_SESSIONS: usize = 100_000;
/// The most answers kept per client (bounds a client that never acknowledges).
pub const MAX_KEPT_RESPONSES: usize = 1024;

/// One client's session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Client {
    /// Every request below this has been answered to the client.
    pub first_incomplete: u64,
    /// State-machine time of the last request (for expiry and LRU eviction).
    pub last_active_ms: u64,
    /// Answers to requests `>= first_incomplete`, by sequence number.
    pub responses: BTreeMap<u64, WriteResponse>,
}

/// What to do with a request that carries a session.
#[derive(Debug)]
pub(crate) enum Admission {
    /// First time seen: apply it, then [`Sessions::record`] the answer.
    Apply,
    /// A retry of an applied request: answer with this, change nothing.
    Replay(WriteResponse),
    /// Refuse without applying (and without recording).
    Refuse(KvError),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Sessions {
    clients: BTreeMap<u64, Client>,
    /// `(last_active_ms, client_id)`: the front is both the next to expire and
    /// the least recently used.
    by_activity: BTreeSet<(u64, u64)>,
    cap: usize,
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions {
            clients: BTreeMap::new(),
            by_activity: BTreeSet::new(),
            cap: MAX_SESSIONS,
        }
    }
}

fn expired(client: &Client, now_ms: u64) -> bool {
    client.last_active_ms.saturating_add(SESSION_TIMEOUT_MS) <= now_ms
}

impl Sessions {
    /// Opens a session for `client_id` (the log index of the register entry,
    /// hence unique and the same on every replica), evicting the least
    /// recently active sessions beyond the cap.
    pub fn register(&mut self, client_id: u64, now_ms: u64) {
        self.insert(
            client_id,
            Client {
                first_incomplete: 0,
                last_active_ms: now_ms,
                responses: BTreeMap::new(),
            },
        );
        while self.clients.len() > self.cap {
            let Some((_, lru)) = self.by_activity.pop_first() else {
                break;
            };
            self.clients.remove(&lru);
        }
    }

    /// Decides whether the request `session` is applied, replayed or refused,
    /// and updates the client's activity and acknowledged answers.
    pub fn admit(&mut self, session: &Session, now_ms: u64) -> Admission {
        let id = session.client_id;
        let Some(client) = self.clients.get(&id) else {
            return Admission::Refuse(session_expired(format!(
                "client {id} has no session (never registered, expired or evicted); register again"
            )));
        };
        if expired(client, now_ms) {
            self.remove(id);
            return Admission::Refuse(session_expired(format!(
                "the session of client {id} expired after an hour without requests; register again"
            )));
        }
        let mut client = self.remove(id).expect("looked up above");
        client.last_active_ms = client.last_active_ms.max(now_ms);
        let admission = if session.seq < client.first_incomplete {
            Admission::Refuse(session_expired(format!(
                "request {} of client {id} is below its first incomplete request {}; its answer was discarded",
                session.seq, client.first_incomplete
            )))
        } else if session.first_incomplete > session.seq {
            Admission::Refuse(invalid(format!(
                "request {} of client {id} claims first_incomplete {}, above itself",
                session.seq, session.first_incomplete
            )))
        } else {
            if session.first_incomplete > client.first_incomplete {
                client.first_incomplete = session.first_incomplete;
                client.responses = client.responses.split_off(&session.first_incomplete);
            }
            match client.responses.get(&session.seq) {
                Some(response) => Admission::Replay(response.clone()),
                None => Admission::Apply,
            }
        };
        self.insert(id, client);
        admission
    }

    /// Keeps the answer to an applied request for its retries.
    pub fn record(&mut self, session: &Session, response: &WriteResponse) {
        let Some(client) = self.clients.get_mut(&session.client_id) else {
            return;
        };
        client.responses.insert(session.seq, response.clone());
        while client.responses.len() > MAX_KEPT_RESPONSES {
            let (lowest, _) = client.responses.pop_first().expect("non-empty");
            client.first_incomplete = client.first_incomplete.max(lowest + 1);
        }
    }

    /// Removes up to `max` sessions idle for [`SESSION_TIMEOUT_MS`] at
    /// `now_ms`, oldest first; bounded for the same reason as the key sweep.
    pub fn sweep(&mut self, now_ms: u64, max: usize) {
        for _ in 0..max {
            match self.by_activity.first() {
                Some(&(last, id)) if last.saturating_add(SESSION_TIMEOUT_MS) <= now_ms => {
                    self.remove(id);
                }
                _ => break,
            }
        }
    }

    /// Adds (or replaces) a client; also how a snapshot rebuilds the table.
    pub fn insert(&mut self, client_id: u64, client: Client) {
        self.remove(client_id);
        self.by_activity.insert((client.last_active_ms, client_id));
        self.clients.insert(client_id, client);
    }

    fn remove(&mut self, client_id: u64) -> Option<Client> {
        let client = self.clients.remove(&client_id)?;
        self.by_activity.remove(&(client.last_active_ms, client_id));
        Some(client)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    #[cfg(test)]
    pub fn contains(&self, client_id: u64) -> bool {
        self.clients.contains_key(&client_id)
    }

    /// Sessions in client-id order (for the snapshot).
    pub fn iter(&self) -> impl Iterator<Item = (&u64, &Client)> {
        self.clients.iter()
    }

    /// Sets the cap ([`super::Limits::max_sessions`]; lower in tests and the
    /// simulator so that eviction happens cheaply).
    pub fn set_cap(&mut self, cap: usize) {
        self.cap = cap;
    }
}
