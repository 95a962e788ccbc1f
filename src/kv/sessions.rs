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
//!   more forgets the lowest and raises that client's `first_incomplete`;
//! - kept answers are bounded in bytes too (a CAS answer carries a value of
//!   up to 1 MiB): at most [`MAX_KEPT_BYTES_PER_CLIENT`] per client (its
//!   lowest answers are forgotten first, but its newest one is kept) and at
//!   most [`MAX_KEPT_BYTES`] in all, a hard bound: beyond it the lowest
//!   answers of the least recently active clients are forgotten first
//!   (oldest first). An answer's size is its encoded length plus a fixed
//!   overhead, so every replica evicts the same answers, and the indexes
//!   below are rebuilt from the sessions alone (a snapshot restores them).
//!
//! Forgetting an answer raises the client's `first_incomplete` past it (only
//! a client's lowest answer is ever forgotten, so the kept ones stay at or
//! above it). Whatever was forgotten is answered with `SESSION_EXPIRED`,
//! never by applying a request a second time: to a client that sent the
//! request before, that means "outcome unknown".

use super::Limits;
use super::error::{invalid, session_expired};
use crate::pb::{KvError, Session, WriteResponse};
use prost::Message;
use std::collections::{BTreeMap, BTreeSet};

/// A session with no request for this long (state-machine time) expires.
pub const SESSION_TIMEOUT_MS: u64 = 60 * 60 * 1000;
/// The most sessions kept; the least recently active is evicted beyond it.
pub const MAX_SESSIONS: usize = 100_000;
/// The most answers kept per client (bounds a client that never acknowledges).
pub const MAX_KEPT_RESPONSES: usize = 1024;
/// The most bytes of answers kept per client (its newest answer is kept
/// whatever its size, within [`MAX_KEPT_BYTES`]).
pub const MAX_KEPT_BYTES_PER_CLIENT: usize = 8 << 20;
/// The most bytes of answers kept for all clients together: a hard bound.
pub const MAX_KEPT_BYTES: usize = 64 << 20;
/// What one kept answer costs beyond its encoded bytes (map node, key).
const ANSWER_OVERHEAD: usize = 64;

/// The bytes one kept answer counts for (deterministic on every replica).
pub(crate) fn answer_bytes(response: &WriteResponse) -> usize {
    response.encoded_len() + ANSWER_OVERHEAD
}

/// One client's session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Client {
    /// Every request below this has been answered to the client.
    pub first_incomplete: u64,
    /// State-machine time of the last request (for expiry and LRU eviction).
    pub last_active_ms: u64,
    /// Answers to requests `>= first_incomplete`, by sequence number.
    pub responses: BTreeMap<u64, WriteResponse>,
    /// The user that registered it (empty: none); only it may use the
    /// session while auth is enabled.
    pub owner: String,
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

/// [`Sessions::verdict`]: an admission, and what it does to the session.
enum Verdict<'a> {
    /// Refused, the session left as it is (none, or another user's).
    Untouched(KvError),
    /// Refused: the session is past its timeout and goes.
    Expired(KvError),
    /// Refused, the client's activity noted.
    Refused(KvError),
    /// A retry of an applied request, answered with this.
    Replay(&'a WriteResponse),
    /// First time seen.
    Apply,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Sessions {
    clients: BTreeMap<u64, Client>,
    /// `(last_active_ms, client_id)` of every client: the front is both the
    /// next to expire and the least recently used.
    by_activity: BTreeSet<(u64, u64)>,
    /// The part of `by_activity` whose clients keep answers: the front is
    /// where answers are forgotten first when over the total byte bound.
    holders: BTreeSet<(u64, u64)>,
    /// Bytes of kept answers per holder (see [`answer_bytes`]).
    held: BTreeMap<u64, usize>,
    /// The sum of `held`.
    kept_bytes: usize,
    bounds: Bounds,
}

/// The bounds of the table, from [`Limits`]: the product's constants, lower
/// in tests and the simulator so that eviction happens cheaply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bounds {
    sessions: usize,
    bytes_per_client: usize,
    bytes: usize,
}

/// Forgets `client`'s lowest kept answer, so a retry of it is refused as
/// expired; returns the bytes freed.
fn forget_lowest(client: &mut Client) -> usize {
    let Some((lowest, response)) = client.responses.pop_first() else {
        return 0;
    };
    client.first_incomplete = client.first_incomplete.max(lowest + 1);
    answer_bytes(&response)
}

fn expired(client: &Client, now_ms: u64) -> bool {
    client.last_active_ms.saturating_add(SESSION_TIMEOUT_MS) <= now_ms
}

impl Sessions {
    /// An empty table with the bounds of `limits`.
    pub fn new(limits: &Limits) -> Sessions {
        Sessions {
            clients: BTreeMap::new(),
            by_activity: BTreeSet::new(),
            holders: BTreeSet::new(),
            held: BTreeMap::new(),
            kept_bytes: 0,
            bounds: Bounds {
                sessions: limits.max_sessions,
                bytes_per_client: limits.max_kept_bytes_per_client,
                bytes: limits.max_kept_bytes,
            },
        }
    }

    /// Opens a session for `client_id` (the log index of the register entry,
    /// hence unique and the same on every replica), evicting the least
    /// recently active sessions beyond the cap.
    pub fn register(&mut self, client_id: u64, now_ms: u64, owner: &str) {
        self.insert(
            client_id,
            Client {
                first_incomplete: 0,
                last_active_ms: now_ms,
                responses: BTreeMap::new(),
                owner: owner.to_string(),
            },
        );
        while self.clients.len() > self.bounds.sessions {
            let Some(&(_, lru)) = self.by_activity.first() else {
                break;
            };
            // `remove` drops the session from every index, its kept answers
            // from the byte count too.
            self.remove(lru);
        }
    }

    /// What to do with the request `session`, before anything moves:
    /// [`Sessions::admit`] carries it out, [`Sessions::peek`] only tells.
    fn verdict(&self, session: &Session, now_ms: u64, user: Option<&str>) -> Verdict<'_> {
        let id = session.client_id;
        let Some(client) = self.clients.get(&id) else {
            return Verdict::Untouched(session_expired(format!(
                "client {id} has no session (never registered, expired or evicted); register again"
            )));
        };
        if let Some(user) = user
            && client.owner != user
        {
            return Verdict::Untouched(super::auth::denied(format!(
                "the session of client {id} belongs to another user"
            )));
        }
        if expired(client, now_ms) {
            return Verdict::Expired(session_expired(format!(
                "the session of client {id} expired after an hour without requests; register again"
            )));
        }
        if session.seq < client.first_incomplete {
            Verdict::Refused(session_expired(format!(
                "the answer to request {} of client {id} is no longer kept (acknowledged, or \
                 evicted to bound session memory; first kept request is {}): not applied now, \
                 and if it was sent before, its outcome is unknown",
                session.seq, client.first_incomplete
            )))
        } else if session.first_incomplete > session.seq {
            Verdict::Refused(invalid(format!(
                "request {} of client {id} claims first_incomplete {}, above itself",
                session.seq, session.first_incomplete
            )))
        } else {
            // Acknowledging answers below `first_incomplete` (<= seq) never
            // drops this request's: it is looked up before they go.
            match client.responses.get(&session.seq) {
                Some(response) => Verdict::Replay(response),
                None => Verdict::Apply,
            }
        }
    }

    /// What [`Sessions::admit`] would decide, changing nothing: a leader
    /// asks before it proposes a membership change (docs/consensus.md,
    /// "Membership changes, exactly once").
    pub fn peek(&self, session: &Session, now_ms: u64, user: Option<&str>) -> Admission {
        match self.verdict(session, now_ms, user) {
            Verdict::Untouched(e) | Verdict::Expired(e) | Verdict::Refused(e) => {
                Admission::Refuse(e)
            }
            Verdict::Replay(response) => Admission::Replay(response.clone()),
            Verdict::Apply => Admission::Apply,
        }
    }

    /// Decides whether the request `session` is applied, replayed or refused,
    /// and updates the client's activity and acknowledged answers. With
    /// `user` set (auth enabled), a session owned by another user is refused.
    pub fn admit(&mut self, session: &Session, now_ms: u64, user: Option<&str>) -> Admission {
        let id = session.client_id;
        let admission = match self.verdict(session, now_ms, user) {
            Verdict::Untouched(e) => return Admission::Refuse(e),
            Verdict::Expired(e) => {
                self.remove(id);
                return Admission::Refuse(e);
            }
            Verdict::Refused(e) => Admission::Refuse(e),
            Verdict::Replay(response) => Admission::Replay(response.clone()),
            Verdict::Apply => Admission::Apply,
        };
        // Updated in place, indexes included: taking the client out and
        // putting it back cost every write twice the map operations and a
        // fresh sum of its kept answers (docs/performance.md, "Where the CPU
        // goes"). `check_invariants` holds the two ways to the same table.
        let Some(client) = self.clients.get_mut(&id) else {
            unreachable!("client {id} was looked up by the verdict");
        };
        let was = (client.last_active_ms, id);
        client.last_active_ms = client.last_active_ms.max(now_ms);
        let now = (client.last_active_ms, id);
        let mut freed = 0;
        if !matches!(admission, Admission::Refuse(_))
            && session.first_incomplete > client.first_incomplete
        {
            client.first_incomplete = session.first_incomplete;
            let kept = client.responses.split_off(&session.first_incomplete);
            // What is left below `first_incomplete` was acknowledged.
            freed = client.responses.values().map(answer_bytes).sum();
            client.responses = kept;
        }
        let holds = !client.responses.is_empty();
        if was != now {
            self.by_activity.remove(&was);
            self.by_activity.insert(now);
            if self.holders.remove(&was) {
                self.holders.insert(now);
            }
        }
        if freed > 0 {
            let before = self.held.remove(&id).unwrap_or(0);
            self.kept_bytes = self.kept_bytes.saturating_sub(before);
            let after = before.saturating_sub(freed);
            if holds && after > 0 {
                self.held.insert(id, after);
                self.kept_bytes += after;
            } else {
                self.holders.remove(&now);
            }
        }
        admission
    }

    /// Keeps the answer to an applied request for its retries, then forgets
    /// the oldest answers beyond the count and byte bounds. Runs on every
    /// applied write: the byte accounting is updated, never recomputed.
    pub fn record(&mut self, session: &Session, response: &WriteResponse) {
        let id = session.client_id;
        let mut bytes = self.held.get(&id).copied().unwrap_or(0) + answer_bytes(response);
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        if let Some(replaced) = client.responses.insert(session.seq, response.clone()) {
            bytes -= answer_bytes(&replaced);
        }
        while client.responses.len() > MAX_KEPT_RESPONSES
            || (bytes > self.bounds.bytes_per_client && client.responses.len() > 1)
        {
            bytes -= forget_lowest(client);
        }
        let key = (client.last_active_ms, id);
        self.set_held(key, bytes);
        while self.kept_bytes > self.bounds.bytes {
            let Some(&oldest) = self.holders.first() else {
                break;
            };
            let freed = match self.clients.get_mut(&oldest.1) {
                Some(victim) => forget_lowest(victim),
                // Cannot happen while the invariants hold (every holder is a
                // client); if it did, dropping the stray entry is the same
                // decision on every replica, where a panic would stop them all.
                None => self.held.get(&oldest.1).copied().unwrap_or(0),
            };
            let left = self
                .held
                .get(&oldest.1)
                .map_or(0, |b| b.saturating_sub(freed));
            self.set_held(oldest, left);
        }
    }

    /// Notes that the client at `key` (activity, id) keeps `bytes` of
    /// answers; 0 means none, and it leaves `holders`.
    fn set_held(&mut self, key: (u64, u64), bytes: usize) {
        self.kept_bytes = self
            .kept_bytes
            .saturating_sub(self.held.remove(&key.1).unwrap_or(0));
        self.holders.remove(&key);
        if bytes > 0 {
            self.held.insert(key.1, bytes);
            self.holders.insert(key);
            self.kept_bytes += bytes;
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
        let key = (client.last_active_ms, client_id);
        self.by_activity.insert(key);
        if !client.responses.is_empty() {
            let bytes = client.responses.values().map(answer_bytes).sum();
            self.holders.insert(key);
            self.held.insert(client_id, bytes);
            self.kept_bytes += bytes;
        }
        self.clients.insert(client_id, client);
    }

    fn remove(&mut self, client_id: u64) -> Option<Client> {
        let client = self.clients.remove(&client_id)?;
        let key = (client.last_active_ms, client_id);
        self.by_activity.remove(&key);
        self.holders.remove(&key);
        self.kept_bytes = self
            .kept_bytes
            .saturating_sub(self.held.remove(&client_id).unwrap_or(0));
        Some(client)
    }

    /// Bytes of all kept answers (bounded by [`MAX_KEPT_BYTES`]).
    #[cfg(test)]
    pub fn kept_bytes(&self) -> usize {
        self.kept_bytes
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
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&u64, &Client)> {
        self.clients.iter()
    }

    /// Checks what every operation above relies on, naming the first
    /// broken rule: the indexes are exactly those the sessions imply (so a
    /// snapshot, which rebuilds them from the sessions alone, restores the
    /// same table), and every bound holds.
    pub fn check_invariants(&self) -> Result<(), String> {
        let b = self.bounds;
        if self.clients.len() > b.sessions {
            return Err(format!(
                "{} sessions kept, above the bound of {}",
                self.clients.len(),
                b.sessions
            ));
        }
        let mut activity = BTreeSet::new();
        let mut holders = BTreeSet::new();
        let mut held = BTreeMap::new();
        for (&id, client) in &self.clients {
            activity.insert((client.last_active_ms, id));
            if let Some((&lowest, _)) = client.responses.first_key_value()
                && lowest < client.first_incomplete
            {
                return Err(format!(
                    "client {id} keeps the answer to request {lowest}, below its first \
                     incomplete request {}",
                    client.first_incomplete
                ));
            }
            if client.responses.len() > MAX_KEPT_RESPONSES {
                return Err(format!(
                    "client {id} keeps {} answers",
                    client.responses.len()
                ));
            }
            let bytes: usize = client.responses.values().map(answer_bytes).sum();
            if bytes > b.bytes_per_client && client.responses.len() > 1 {
                return Err(format!(
                    "client {id} keeps {bytes} bytes of answers, above the bound of {}",
                    b.bytes_per_client
                ));
            }
            if bytes > 0 {
                holders.insert((client.last_active_ms, id));
                held.insert(id, bytes);
            }
        }
        if activity != self.by_activity {
            return Err("the activity index does not list exactly the sessions".into());
        }
        if holders != self.holders {
            return Err("the holders index does not list exactly the sessions with answers".into());
        }
        if held != self.held {
            return Err("the bytes held per client are not those of their answers".into());
        }
        let total: usize = held.values().sum();
        if total != self.kept_bytes {
            return Err(format!(
                "{} bytes of answers counted, {total} kept",
                self.kept_bytes
            ));
        }
        if total > b.bytes {
            return Err(format!(
                "{total} bytes of answers kept, above the bound of {}",
                b.bytes
            ));
        }
        Ok(())
    }
}
