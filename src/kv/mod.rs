//! The replicated key-value state machine: pure and deterministic.
//!
//! Every replica applies the same committed entries in the same order and
//! must end in the same state, so nothing here reads a clock, a random number
//! or iterates a hash map. Time is **cluster time**: the maximum `stamp_ms`
//! of the proposals applied so far, which never runs backwards. A leader
//! stamps each proposal with the cluster time of the entry it applied last
//! plus the monotonic time it measured since (`crate::replica`), and keeps
//! it moving with time entries (a proposal without a command) while keys
//! with a deadline exist; no wall clock is involved. A key
//! expires when cluster time reaches its deadline. Expired keys are dropped
//! lazily when a command touches them and by a bounded sweep on every entry;
//! reads (`get`, `ttl`) are evaluated at the applied cluster time, so every
//! replica that has applied the same entries answers the same.
//!
//! Refusals (limits, non-integers, expired sessions, malformed entries) are
//! answers, not failures: the entry still counts as applied, nothing else
//! changes, and every replica answers the same.

mod auth;
mod commands;
mod error;
mod hash;
mod limits;
mod sessions;
mod snapshot;
mod store;
#[cfg(test)]
mod tests;

pub use crate::pb::KvError;
pub use auth::{Auth, Need, ROOT, SIGNING_KEY_BYTES, User};
pub use commands::parse_integer;
pub use limits::Limits;
pub use sessions::{
    MAX_KEPT_BYTES, MAX_KEPT_BYTES_PER_CLIENT, MAX_KEPT_RESPONSES, MAX_SESSIONS, SESSION_TIMEOUT_MS,
};

use crate::pb::command::Op;
use crate::pb::write_response::Result as Outcome;
use crate::pb::{self, GetResponse, Proposal, RegisterResult, TtlResponse, WriteResponse};
use bytes::Bytes;
use prost::Message;
use sessions::{Admission, Sessions};
use std::collections::BTreeMap;
use std::sync::Arc;
use store::Store;

/// Most expired keys (and, separately, idle sessions) removed per applied
/// entry. Each entry sets at most one deadline, so this keeps up with any
/// steady state while bounding the work of one entry after a burst.
const SWEEP_PER_APPLY: usize = 64;

/// Longest EXPIRE accepted, in seconds (etcd's longest lease TTL, about
/// 285 years). The leader refuses larger values before proposing
/// (`validate`). `apply` does not check it: an entry is applied the same on
/// every replica whatever it holds (a deadline saturates at `u64::MAX` ms).
pub const MAX_TTL_SECONDS: u64 = 9_000_000_000;

/// The key-value state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateMachine {
    limits: Limits,
    store: Store,
    sessions: Sessions,
    /// State-machine time: the largest proposal stamp applied (ms since epoch).
    time_ms: u64,
    applied_index: u64,
    /// Addresses of members added at run time, by id (see `members`).
    members: BTreeMap<u64, pb::MemberAddrsCmd>,
    /// Users, roles and permissions (see `auth`); shared, as it rarely
    /// changes and every copy of the state machine carries it.
    auth: Arc<Auth>,
}

impl StateMachine {
    /// An empty state machine that has applied nothing.
    pub fn new(limits: Limits) -> StateMachine {
        StateMachine {
            limits,
            store: Store::default(),
            sessions: Sessions::new(&limits),
            time_ms: 0,
            applied_index: 0,
            members: BTreeMap::new(),
            auth: Arc::default(),
        }
    }

    /// The auth store as applied: nodes check reads and tokens against it.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The auth store, for `raftctl snapshot restore --disable-auth`.
    pub fn auth_mut(&mut self) -> &mut Auth {
        Arc::make_mut(&mut self.auth)
    }

    /// Checks a command against the limits before the leader proposes it, so
    /// a client gets a clear refusal without a trip through the log.
    pub fn validate(&self, cmd: &pb::Command) -> Result<(), pb::KvError> {
        match cmd.op {
            Some(Op::MemberAddrs(_)) => {
                return Err(error::invalid(
                    "member addresses are set by adding a member",
                ));
            }
            Some(Op::StateReport(_)) => {
                return Err(error::invalid(
                    "state reports are proposed by the leader only",
                ));
            }
            _ => {}
        }
        if let Some(Op::Expire(e)) = &cmd.op
            && e.seconds > MAX_TTL_SECONDS
        {
            return Err(error::invalid(format!(
                "expire: {} seconds is above the limit of {MAX_TTL_SECONDS} seconds",
                e.seconds
            )));
        }
        self.limits.check(cmd)
    }

    /// Addresses of members added at run time, as replicated: every node
    /// (and every future leader) knows how to reach them. Not client data.
    pub fn members(&self) -> &BTreeMap<u64, pb::MemberAddrsCmd> {
        &self.members
    }

    /// Forgets the member addresses learned at run time: a cluster restored
    /// from a backup has only the members it is restored with, whose
    /// addresses its nodes are given (docs/operations.md, "Backup and
    /// restore").
    pub fn forget_member_addresses(&mut self) {
        self.members.clear();
    }

    /// Applies the committed entry at `index` whose bytes are a `pb::Proposal`
    /// and returns the answer for the client (`index` set to `index`).
    ///
    /// An index at or below `applied_index()` is a caller bug (an entry applied
    /// twice): it is refused with `INVALID` and changes nothing. Any other
    /// entry advances the applied index, even when refused. A retry answered
    /// from its session carries the index where the request was first applied
    /// (the same answer as the first time, so a client never sees two).
    pub fn apply(&mut self, index: u64, proposal: &[u8]) -> pb::WriteResponse {
        if index <= self.applied_index {
            return respond(
                index,
                Outcome::Error(error::invalid(format!(
                    "entry {index} is at or below the applied index {}",
                    self.applied_index
                ))),
            );
        }
        self.applied_index = index;
        let proposal = match Proposal::decode(proposal) {
            Ok(p) => p,
            Err(e) => {
                let msg = format!("entry {index} is not a valid proposal: {e}");
                return respond(index, Outcome::Error(error::invalid(msg)));
            }
        };
        let Some(command) = proposal.command else {
            // A time entry: it only moves cluster time (and the sweeps).
            self.advance_time(proposal.stamp_ms);
            return WriteResponse {
                result: None,
                index,
            };
        };
        // Checked before anything moves (even the clock): a refused entry
        // changes nothing but the applied index. Not kept in the session: the
        // same command is refused the same way when retried.
        if let Err(e) = self.limits.check(&command) {
            return respond(index, Outcome::Error(e));
        }
        // The authoritative permission check: at this log position, the same
        // on every replica (docs/security.md, "Users and roles").
        if let Err(e) = self.auth.check(&proposal.user, Need::of(&command)) {
            return respond(index, Outcome::Error(e));
        }
        self.advance_time(proposal.stamp_ms);

        match command.op {
            Some(Op::MemberAddrs(m)) => {
                self.members.insert(m.id, m);
                return respond(index, Outcome::MemberAddrs(pb::MemberAddrsResult {}));
            }
            // Both leave the state as it is: the replica hashes it at a
            // check, and compares its hash with a report.
            Some(Op::StateCheck(_)) => {
                return respond(index, Outcome::StateCheck(pb::StateCheckResult {}));
            }
            Some(Op::StateReport(r)) => return respond(index, Outcome::StateReport(r)),
            Some(Op::Auth(a)) => {
                let outcome = match self.auth_mut().apply(a) {
                    Ok(r) => Outcome::Auth(r),
                    Err(e) => Outcome::Error(e),
                };
                return respond(index, outcome);
            }
            _ => {}
        }
        // Registering ignores any session it carries: it is how a client gets one.
        if let Some(Op::Register(_)) = command.op {
            self.sessions.register(index, self.time_ms, &proposal.user);
            let result = RegisterResult { client_id: index };
            return respond(index, Outcome::Register(result));
        }
        let session = proposal.session.filter(|s| s.client_id != 0);
        if let Some(session) = &session {
            let owner = self.auth.enabled().then_some(proposal.user.as_str());
            match self.sessions.admit(session, self.time_ms, owner) {
                Admission::Apply => {}
                Admission::Replay(response) => return response,
                Admission::Refuse(e) => return respond(index, Outcome::Error(e)),
            }
        }
        let response = respond(index, self.execute(command));
        if let Some(session) = &session {
            self.sessions.record(session, &response);
        }
        response
    }

    /// Whether the membership change asked through `context`'s session is
    /// new (`Ok(None)`: propose it), a retry of one applied at an index
    /// (`Ok(Some(index))`: answer with it), or refused by the session.
    /// Changes nothing: the leader asks before proposing, and only entries
    /// applied on every replica move sessions (docs/consensus.md,
    /// "Membership changes, exactly once").
    pub fn admit_change(&self, context: &pb::ChangeContext) -> Result<Option<u64>, KvError> {
        let Some(session) = context.session.as_ref().filter(|s| s.client_id != 0) else {
            return Ok(None);
        };
        let owner = self.auth.enabled().then_some(context.user.as_str());
        match self.sessions.peek(session, self.time_ms, owner) {
            Admission::Apply => Ok(None),
            Admission::Replay(WriteResponse {
                result: Some(Outcome::Change(_)),
                index,
            }) => Ok(Some(index)),
            Admission::Replay(other) => Err(error::invalid(format!(
                "request {} of client {} was a write (answered at index {}), not a membership \
                 change",
                session.seq, session.client_id, other.index
            ))),
            Admission::Refuse(e) => Err(e),
        }
    }

    /// The config entry at `index`, with the `context` its leader gave it,
    /// is applied: a change made through a session has its answer kept
    /// there, so that a retry is answered with it rather than evaluated
    /// against the membership it already changed.
    pub fn change_applied(&mut self, index: u64, context: &[u8]) {
        if context.is_empty() {
            return;
        }
        // Undecodable context is from no leader of ours: every replica
        // skips it alike.
        let Ok(context) = pb::ChangeContext::decode(context) else {
            return;
        };
        let Some(session) = context.session.filter(|s| s.client_id != 0) else {
            return;
        };
        let owner = self.auth.enabled().then_some(context.user.as_str());
        if let Admission::Apply = self.sessions.admit(&session, self.time_ms, owner) {
            let answer = respond(index, Outcome::Change(pb::ChangeResult {}));
            self.sessions.record(&session, &answer);
        }
    }

    /// Moves cluster time to `stamp_ms` unless it is already later, and
    /// sweeps what expired.
    fn advance_time(&mut self, stamp_ms: u64) {
        self.time_ms = self.time_ms.max(stamp_ms);
        self.store.sweep(self.time_ms, SWEEP_PER_APPLY);
        self.sessions.sweep(self.time_ms, SWEEP_PER_APPLY);
    }

    /// Runs one checked command (not Register) at the current time.
    fn execute(&mut self, command: pb::Command) -> Outcome {
        let t = self.time_ms;
        match command.op {
            Some(Op::Set(c)) => commands::set(&mut self.store, c.key, c.value),
            Some(Op::Del(c)) => commands::del(&mut self.store, &c.key, t),
            Some(Op::Incr(c)) => commands::incr(&mut self.store, c.key, t),
            Some(Op::Expire(c)) => commands::expire(&mut self.store, c.key, c.seconds, t),
            Some(Op::Cas(c)) => commands::cas(&mut self.store, c, t),
            // Unreachable: `check` refuses a missing op; apply handles the rest.
            None
            | Some(
                Op::Register(_)
                | Op::MemberAddrs(_)
                | Op::StateCheck(_)
                | Op::StateReport(_)
                | Op::Auth(_),
            ) => Outcome::Error(error::invalid("no operation")),
        }
    }

    /// The value of `key` as of the applied entries, treating a key whose
    /// deadline is at or before the applied cluster time as absent. Never
    /// another clock: a node whose clock is ahead would hide a key that the
    /// next leader shows again.
    pub fn get(&self, key: &[u8]) -> pb::GetResponse {
        match self.store.live(key, self.time_ms) {
            Some(item) => GetResponse {
                found: true,
                value: item.value.clone(),
            },
            None => GetResponse {
                found: false,
                value: Bytes::new(),
            },
        }
    }

    /// Whether `key` exists at the applied cluster time and the whole
    /// seconds left before it expires, rounded up (so a live key never reports
    /// 0); `seconds` is `None` for a key without expiry.
    pub fn ttl(&self, key: &[u8]) -> pb::TtlResponse {
        let t = self.time_ms;
        match self.store.live(key, t) {
            Some(item) => TtlResponse {
                found: true,
                seconds: item.deadline.map(|d| (d - t).div_ceil(1000)),
            },
            None => TtlResponse {
                found: false,
                seconds: None,
            },
        }
    }

    /// Whether cluster time must keep moving for a key: some key has a
    /// deadline (the leader then proposes time entries when idle).
    pub fn has_deadlines(&self) -> bool {
        self.store.has_deadlines()
    }

    /// Whether any client session is kept (they expire on cluster time too).
    pub fn has_sessions(&self) -> bool {
        self.sessions.iter().next().is_some()
    }

    /// Number of stored keys. Keys past their deadline that the sweep has not
    /// removed yet are counted (they are never returned by reads).
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Whether no key is stored (see [`StateMachine::len`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Cluster time: the state machine's clock, in milliseconds, as of the
    /// entries applied (see the module docs).
    pub fn time_ms(&self) -> u64 {
        self.time_ms
    }

    /// Checks the invariants of the whole state (sessions and their
    /// indexes and bounds, the expiry index, sessions named by applied
    /// entries), naming the first that is broken. Costs a scan of the
    /// state: the simulator, the property tests and the fuzzers call it
    /// after every entry; the node does not.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.sessions.check_invariants()?;
        self.store.check_invariants()?;
        if let Some((&id, _)) = self.sessions.iter().next_back()
            && id > self.applied_index
        {
            return Err(format!(
                "session {id} is above the applied index {}",
                self.applied_index
            ));
        }
        Ok(())
    }

    /// The index of the last entry applied (0 before any).
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }
}

fn respond(index: u64, outcome: Outcome) -> WriteResponse {
    WriteResponse {
        result: Some(outcome),
        index,
    }
}

/// Keys per range page when the request sets no limit, and the most a
/// request may ask for.
pub const RANGE_PAGE: usize = 1000;
pub const RANGE_PAGE_MAX: usize = 10_000;

/// What a range read needs of the state machine, copied in O(1) (the key
/// space is a persistent map), so a page — and the count over the whole
/// prefix, which scans it — can be computed off the node loop.
#[derive(Clone, Debug)]
pub struct RangeView {
    limits: Limits,
    store: Store,
    time_ms: u64,
}

impl StateMachine {
    /// The applied state as a range read sees it, at the applied cluster time.
    pub fn range_view(&self) -> RangeView {
        RangeView {
            limits: self.limits,
            store: self.store.clone(),
            time_ms: self.time_ms,
        }
    }

    /// [`RangeView::range`] on the applied state.
    pub fn range(&self, r: &pb::RangeRequest) -> pb::RangeResponse {
        self.range_view().range(r)
    }
}

impl RangeView {
    /// One page of the live keys starting with `r.prefix` after `r.after`,
    /// in byte order, at the applied cluster time (like [`get`]: expired
    /// keys are absent). A page holds at most `r.limit` keys (0:
    /// [`RANGE_PAGE`]; never more than [`RANGE_PAGE_MAX`]) and stops before
    /// its keys and values exceed one largest key and value together, so it
    /// fits in one client message (it always holds at least one key).
    /// `count` is the number of live keys under the prefix, given on the
    /// first page only (`after` empty; 0 on later pages), because counting
    /// scans the whole prefix.
    ///
    /// [`get`]: StateMachine::get
    pub fn range(&self, r: &pb::RangeRequest) -> pb::RangeResponse {
        let t = self.time_ms;
        let limit = match r.limit as usize {
            0 => RANGE_PAGE,
            n => n.min(RANGE_PAGE_MAX),
        };
        let budget = self.limits.max_key_bytes + self.limits.max_value_bytes;
        let after = (!r.after.is_empty()).then_some(&r.after[..]);
        let live = self
            .store
            .prefixed(&r.prefix, after)
            .filter(|(_, item)| item.live_at(t));
        let mut items = Vec::new();
        let mut bytes = 0;
        let mut more = false;
        for (key, item) in live {
            let value = if r.keys_only {
                Bytes::new()
            } else {
                item.value.clone()
            };
            let size = key.len() + value.len() + 8;
            if items.len() == limit || (!items.is_empty() && bytes + size > budget) {
                more = true;
                break;
            }
            bytes += size;
            items.push(pb::KeyValue {
                key: key.clone(),
                value,
            });
        }
        let count = match after {
            None => self
                .store
                .prefixed(&r.prefix, None)
                .filter(|(_, item)| item.live_at(t))
                .count() as u64,
            Some(_) => 0,
        };
        pb::RangeResponse { items, more, count }
    }
}
