//! The Raft state machine with a leader lease, split by role and concern:
//! one `Raft` struct, one `impl Raft` block per file (etcd-io/raft keeps a
//! role's behaviour together in `stepLeader` / `stepCandidate` /
//! `stepFollower`; here a role's handlers share a file instead).
//!
//! - `step`: the inputs `tick` and `step`, and the term rules every message
//!   passes before the handler of its kind.
//! - `election`: pre-vote, vote, tally, becoming leader (and the wait for an
//!   old lease it computes: the serving gate `serve_after`).
//! - `follower`: accepting a leader and its appends.
//! - `leader`: the leader's own state, proposals and the commit rule.
//! - `replication`: what the leader sends each follower, and its answers.
//! - `lease`: heartbeat rounds, lease renewal, the leader's timer (stepping
//!   down when the lease cannot be renewed).
//! - `read`: linearizable reads (lease reads and ReadIndex).
//! - `snapshot`: compaction, sending and installing snapshots.
//! - `membership`: one-server changes, removing the leader.
//! - `transfer`: leadership transfer and `TimeoutNow`.
//! - `ready`: the batch of effects handed to the caller.
//!
//! This file: the struct, construction, accessors and the helpers every role
//! uses (sending, role changes, falling back to follower).

mod election;
mod follower;
mod leader;
mod lease;
mod membership;
mod read;
mod ready;
mod replication;
mod snapshot;
mod step;
mod transfer;

use bytes::BytesMut;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::time::Duration;

use crate::raft::log::RaftLog;
use crate::raft::message::*;
use crate::raft::{
    Config, Entry, HardState, Instant, LogId, LogIndex, Membership, NodeId, Payload, Snapshot,
    SnapshotMeta, Term,
};
use election::Ballot;
use leader::Leader;

/// What a node had on disk when it (re)started; empty for a brand-new node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Persisted {
    pub hard_state: HardState,
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
}

/// The identical first entry that every founding member writes, so that all
/// of them start with the same log and the same membership.
pub fn bootstrap(membership: Membership) -> Persisted {
    Persisted {
        hard_state: HardState {
            term: Term(1),
            voted_for: None,
            commit: LogIndex(1),
        },
        snapshot: None,
        entries: vec![Entry {
            id: LogId::new(1, 1),
            payload: Payload::config(membership),
        }],
    }
}

pub struct Raft {
    cfg: Config,
    rng: StdRng,
    now: Instant,
    term: Term,
    voted_for: Option<NodeId>,
    log: RaftLog,
    role: Role,
    leader_id: Option<NodeId>,
    election_deadline: Instant,
    /// When the connection to `leader_id` broke (`connection_lost`), if no
    /// message of that leader sent since has arrived: the election deadline
    /// was brought forward to a grace after it, and once the leader has
    /// been silent for long it no longer counts as live for stickiness
    /// (docs/consensus.md, "Failover on a broken connection").
    leader_lost_at: Option<Instant>,
    /// When this node last accepted a message from a leader, of which term:
    /// the basis of the lease bound it reports when it votes.
    last_leader_contact: Instant,
    contact_term: Term,
    ballots: BTreeMap<NodeId, Ballot>,
    /// In a campaign started by TimeoutNow whose sender released its lease:
    /// leases of this term or older need not be waited for.
    released_term: Option<Term>,
    leader: Option<Leader>,
    /// The serving gate: until this instant a lease of an older term than
    /// the last one this node won may still run somewhere, so the node
    /// serves no read and releases no committed entry to be applied (hence
    /// acknowledged) — whatever its role by then: a leader that steps down
    /// during its wait (transfer, removal, a newer term) keeps it closed.
    /// Only moves forward.
    serve_after: Instant,
    receiving_snapshot: Option<(SnapshotMeta, BytesMut)>,
    membership_seen: LogIndex,
    // Effects waiting for ready().
    msgs: Vec<Message>,
    events: Vec<Event>,
    reads: Vec<ReadState>,
    failed_reads: Vec<u64>,
    /// The hard state the last `Ready` handed out (durable once advanced).
    persisted_hard_state: HardState,
    /// Term and vote as durable: those of the last `Ready` its caller
    /// advanced. A heartbeat may leave early only while our term and vote
    /// equal these.
    durable_vote: (Term, Option<NodeId>),
    /// The `Ready` handed out and not advanced yet, if any.
    unadvanced: Option<Durable>,
    snapshot_requested: bool,
    lease_was_valid: bool,
}

impl Raft {
    pub fn new(cfg: Config, persisted: Persisted, now: Instant) -> Raft {
        let hs = persisted.hard_state;
        let log = RaftLog::restore(persisted.snapshot, persisted.entries, hs.commit);
        let rng = StdRng::seed_from_u64(cfg.seed);
        let membership_seen = log.membership_index();
        let mut raft = Raft {
            cfg,
            rng,
            now,
            term: hs.term,
            voted_for: hs.voted_for,
            log,
            role: Role::Follower,
            leader_id: None,
            election_deadline: now,
            leader_lost_at: None,
            // Unknown before a restart: assume we heard from a leader just now,
            // so the lease bound we report covers any lease we acknowledged.
            last_leader_contact: now,
            contact_term: hs.term,
            ballots: BTreeMap::new(),
            released_term: None,
            leader: None,
            serve_after: now,
            receiving_snapshot: None,
            membership_seen,
            msgs: Vec::new(),
            events: Vec::new(),
            reads: Vec::new(),
            failed_reads: Vec::new(),
            persisted_hard_state: hs,
            durable_vote: (hs.term, hs.voted_for),
            unadvanced: None,
            snapshot_requested: false,
            lease_was_valid: false,
        };
        raft.role = raft.follower_role();
        raft.reset_election_deadline();
        raft
    }

    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn term(&self) -> Term {
        self.term
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.leader_id
    }

    pub fn membership(&self) -> &Membership {
        self.log.membership()
    }

    /// The index of the entry that set the membership in force.
    pub fn membership_index(&self) -> LogIndex {
        self.log.membership_index()
    }

    pub fn commit_index(&self) -> LogIndex {
        self.log.committed()
    }

    /// The term of the entry at `index`, if the log (or its snapshot) still
    /// knows it.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        self.log.term_at(index)
    }

    pub fn last_log_id(&self) -> LogId {
        self.log.last_id()
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The earliest instant at which `tick` has something to do.
    pub fn next_deadline(&self) -> Instant {
        let t = match &self.leader {
            Some(l) => l.next_heartbeat,
            None => self.election_deadline,
        };
        if self.now < self.serve_after {
            t.min(self.serve_after)
        } else {
            t
        }
    }

    pub fn status(&self, now: Instant) -> Status {
        let progress = self
            .leader
            .as_ref()
            .map(|l| {
                l.progress
                    .iter()
                    .map(|(id, p)| PeerStatus {
                        id: *id,
                        match_index: p.match_index,
                        next_index: p.next_index,
                        state: p.state_name(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Status {
            id: self.cfg.id,
            role: self.role,
            term: self.term,
            leader: self.leader_id,
            commit: self.log.committed(),
            applied: self.log.applied(),
            last_index: self.log.last_index(),
            snapshot_index: self.log.snapshot_meta().last.index,
            lease_remaining: self.lease_remaining(now),
            membership: self.log.membership().clone(),
            progress,
        }
    }

    fn advance_clock(&mut self, now: Instant) {
        debug_assert!(now >= self.now, "time went backwards");
        self.now = self.now.max(now);
    }

    fn is_voter(&self) -> bool {
        self.log.membership().is_voter(self.cfg.id)
    }

    fn follower_role(&self) -> Role {
        if self.is_voter() {
            Role::Follower
        } else {
            Role::Learner
        }
    }

    fn peers(&self) -> Vec<NodeId> {
        self.leader_ref().progress.keys().copied().collect()
    }

    fn leader_ref(&self) -> &Leader {
        self.leader.as_ref().expect("leader state")
    }

    fn leader_mut(&mut self) -> &mut Leader {
        self.leader.as_mut().expect("leader state")
    }

    fn not_leader(&self) -> ProposeError {
        ProposeError::NotLeader {
            leader: self.leader_id.filter(|l| *l != self.cfg.id),
        }
    }

    fn check_accepting(&self) -> Result<(), ProposeError> {
        match &self.leader {
            None => Err(self.not_leader()),
            Some(l) if l.transfer.is_some() => {
                Err(ProposeError::Busy("leadership transfer under way".into()))
            }
            Some(_) => Ok(()),
        }
    }

    fn send(&mut self, to: NodeId, body: MessageBody) {
        self.msgs.push(Message {
            from: self.cfg.id,
            to,
            term: self.term,
            body,
        });
    }

    fn reset_election_deadline(&mut self) {
        let t = self.cfg.election_timeout;
        let jitter = self.rng.random_range(0..t.as_nanos().max(1) as u64);
        self.election_deadline = self.now + t + Duration::from_nanos(jitter);
    }

    fn after_input(&mut self) {
        if self.log.membership_index() != self.membership_seen {
            self.on_membership_change();
        }
        let valid = self.lease_remaining(self.now).is_some();
        if valid != self.lease_was_valid {
            self.lease_was_valid = valid;
            self.events.push(if valid {
                Event::LeaseAcquired { term: self.term }
            } else {
                Event::LeaseLost { term: self.term }
            });
        }
    }

    fn set_role(&mut self, role: Role) {
        self.role = role;
        self.events.push(Event::RoleChanged {
            role,
            term: self.term,
            leader: self.leader_id,
        });
    }

    fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        if let Some(l) = self.leader.take() {
            self.failed_reads
                .extend(l.pending_reads.iter().map(|r| r.id));
            // Our own lease may still run: report it as a voter would.
            self.last_leader_contact = self.now;
            self.contact_term = self.term;
        }
        if term > self.term {
            self.term = term;
            self.voted_for = None;
        }
        self.leader_id = leader;
        self.leader_lost_at = None;
        self.ballots.clear();
        self.released_term = None;
        self.reset_election_deadline();
        let role = self.follower_role();
        if role != self.role || leader.is_some() {
            self.set_role(role);
        }
    }
}
