//! The Raft state machine: one struct, step functions per role, the leader's
//! state (progress, rounds, lease) inside the leader's own struct.

mod election;
mod follower;
mod step;

use bytes::{Bytes, BytesMut};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::raft::log::RaftLog;
use crate::raft::message::*;
use crate::raft::progress::{Progress, ReplState};
use crate::raft::{
    Broken, ConfChange, Config, Entry, HardState, Instant, LogId, LogIndex, Membership, NodeId,
    Payload, Snapshot, SnapshotMeta, Term,
};
use election::Ballot;

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
            payload: Payload::Config(membership),
        }],
    }
}

/// Everything only a leader has.
#[derive(Debug)]
struct Leader {
    progress: BTreeMap<NodeId, Progress>,
    /// Current heartbeat round; every message carries it.
    round: u64,
    /// Send times of rounds not yet acknowledged by a majority.
    round_starts: VecDeque<(u64, Instant)>,
    /// Highest round a majority acknowledged.
    acked_round: u64,
    /// Send time of `acked_round` (election time before the first): the
    /// leader steps down when this is older than L.
    last_quorum_contact: Instant,
    /// The lease, once a round was acknowledged: valid until this instant.
    lease_expiry: Option<Instant>,
    /// Given up for a leadership transfer.
    lease_revoked: bool,
    next_heartbeat: Instant,
    transfer: Option<Transfer>,
    pending_reads: VecDeque<PendingRead>,
    /// Proposals appended since the last ready(): replicate them then, in one batch.
    pending_broadcast: bool,
}

#[derive(Debug)]
struct PendingRead {
    id: u64,
    /// ReadIndex: the round whose majority acknowledgement confirms leadership.
    round: Option<u64>,
    index: LogIndex,
}

#[derive(Debug)]
struct Transfer {
    to: NodeId,
    deadline: Instant,
    sent: bool,
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
    persisted_hard_state: HardState,
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

    pub fn commit_index(&self) -> LogIndex {
        self.log.committed()
    }

    pub fn last_log_id(&self) -> LogId {
        self.log.last_id()
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Some(time left) while this node holds a lease it may serve reads from.
    pub fn lease_remaining(&self, now: Instant) -> Option<Duration> {
        let l = self.leader.as_ref()?;
        if l.lease_revoked || now < self.serve_after {
            return None;
        }
        let expiry = l.lease_expiry?;
        (now < expiry).then(|| expiry.saturating_since(now))
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

    pub fn propose(&mut self, command: Bytes, now: Instant) -> Result<LogId, ProposeError> {
        self.advance_clock(now);
        self.check_accepting()?;
        let id = self.log.append(self.term, Payload::Command(command));
        self.leader_mut().pending_broadcast = true;
        Ok(id)
    }

    pub fn propose_conf_change(
        &mut self,
        change: ConfChange,
        now: Instant,
    ) -> Result<LogId, ProposeError> {
        self.advance_clock(now);
        self.check_accepting()?;
        if self.log.membership_index() > self.log.committed() {
            return Err(ProposeError::Busy(
                "a membership change is still being committed".into(),
            ));
        }
        if self.log.term_at(self.log.committed()) != Some(self.term) {
            return Err(ProposeError::Busy(
                "the new leader has not committed an entry of its term yet".into(),
            ));
        }
        let next = change
            .apply(self.log.membership())
            .map_err(ProposeError::Invalid)?;
        if let ConfChange::Promote(id) = change {
            let caught_up = self
                .leader_ref()
                .progress
                .get(&id)
                .is_some_and(|p| p.match_index >= self.log.committed());
            if !caught_up {
                return Err(ProposeError::Busy(format!(
                    "learner {id} has not caught up with the log yet"
                )));
            }
        }
        let id = self.log.append(self.term, Payload::Config(next));
        self.on_membership_change();
        self.leader_mut().pending_broadcast = true;
        self.after_input();
        Ok(id)
    }

    /// Registers a linearizable read; it comes back in `Ready.reads` (or
    /// `failed_reads`) once it may be answered from the applied state.
    pub fn read(&mut self, id: u64, now: Instant) -> Result<(), ProposeError> {
        self.advance_clock(now);
        if self.leader.is_none() {
            return Err(self.not_leader());
        }
        self.leader_mut().pending_reads.push_back(PendingRead {
            id,
            round: None,
            index: LogIndex(0),
        });
        self.process_reads();
        Ok(())
    }

    pub fn transfer_leadership(&mut self, to: NodeId, now: Instant) -> Result<(), ProposeError> {
        self.advance_clock(now);
        if self.leader.is_none() {
            return Err(self.not_leader());
        }
        if to == self.cfg.id {
            return Ok(());
        }
        if !self.log.membership().is_voter(to) {
            return Err(ProposeError::Invalid(format!("node {to} is not a voter")));
        }
        let deadline = now + self.cfg.election_timeout;
        let l = self.leader_mut();
        if l.transfer.is_some() {
            return Err(ProposeError::Busy(
                "a leadership transfer is under way".into(),
            ));
        }
        // Give the lease up first, so the successor need not wait for it.
        l.lease_revoked = true;
        l.transfer = Some(Transfer {
            to,
            deadline,
            sent: false,
        });
        self.events.push(Event::TransferStarted { to });
        self.maybe_send_timeout_now();
        self.send_append(to, false);
        self.after_input();
        Ok(())
    }

    /// The caller snapshotted its state machine at `index` (applied):
    /// compact the log and remember the snapshot for lagging followers.
    pub fn compact(&mut self, index: LogIndex, data: Bytes) -> Snapshot {
        let snap = self.log.compact(index, data);
        self.snapshot_requested = false;
        self.events.push(Event::LogCompacted {
            last: snap.meta.last,
        });
        snap
    }

    /// Takes the effects of every call since the last ready().
    pub fn ready(&mut self) -> Ready {
        if self.leader.as_ref().is_some_and(|l| l.pending_broadcast) {
            self.leader_mut().pending_broadcast = false;
            self.maybe_commit();
            for peer in self.peers() {
                self.send_append(peer, false);
            }
        }
        let hs = self.hard_state();
        let prev = self.persisted_hard_state;
        let hard_state = (hs != prev).then_some(hs);
        let vote_changed = (hs.term != prev.term || hs.voted_for != prev.voted_for)
            && self.cfg.broken != Broken::UnsyncedVote;
        self.persisted_hard_state = hs;
        // Node-wide, not only while leading: see `serve_after`.
        let gate_open = self.now >= self.serve_after
            || (self.cfg.broken == Broken::GateOnlyWhileLeader && self.leader.is_none());
        let committed = if gate_open {
            self.log.take_committed()
        } else {
            Vec::new()
        };
        let applied = self.log.applied();
        let snapshot_due = !self.snapshot_requested
            && applied.0 - self.log.snapshot_meta().last.index.0 >= self.cfg.snapshot_threshold;
        self.snapshot_requested |= snapshot_due;
        debug_assert!(self.reads.iter().all(|r| r.index <= applied));
        let entries = self.log.take_unstable();
        let snapshot = self.log.take_snapshot_to_persist();
        Ready {
            must_sync: vote_changed || !entries.is_empty() || snapshot.is_some(),
            hard_state,
            entries,
            snapshot,
            messages: std::mem::take(&mut self.msgs),
            committed,
            reads: std::mem::take(&mut self.reads),
            failed_reads: std::mem::take(&mut self.failed_reads),
            snapshot_due,
            events: std::mem::take(&mut self.events),
        }
    }

    fn advance_clock(&mut self, now: Instant) {
        debug_assert!(now >= self.now, "time went backwards");
        self.now = self.now.max(now);
    }

    fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            voted_for: self.voted_for,
            commit: self.log.committed(),
        }
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

    fn on_membership_change(&mut self) {
        self.membership_seen = self.log.membership_index();
        let membership = self.log.membership().clone();
        self.events.push(Event::MembershipChanged {
            index: self.membership_seen,
            membership: membership.clone(),
        });
        if let Some(l) = self.leader.as_mut() {
            let next = self.log.last_index().next();
            l.progress.retain(|id, _| membership.contains(*id));
            for id in membership.members() {
                if id != self.cfg.id {
                    l.progress.entry(id).or_insert_with(|| Progress::new(next));
                }
            }
        } else {
            let role = self.follower_role();
            if role != self.role && matches!(self.role, Role::Follower | Role::Learner) {
                self.set_role(role);
            }
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
        self.ballots.clear();
        self.released_term = None;
        self.reset_election_deadline();
        let role = self.follower_role();
        if role != self.role || leader.is_some() {
            self.set_role(role);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_snapshot(
        &mut self,
        from: NodeId,
        term: Term,
        meta: SnapshotMeta,
        offset: u64,
        data: Bytes,
        done: bool,
        round: u64,
    ) {
        debug_assert!(self.leader.is_none(), "validate drops a second leader");
        self.accept_leader(from, term);
        let last_index = meta.last.index;
        let reply = |next_offset, done| MessageBody::SnapshotResponse {
            last_index,
            next_offset,
            done,
            round,
        };
        if last_index <= self.log.committed() {
            // Everything it covers is already committed here.
            self.receiving_snapshot = None;
            self.send(from, reply(0, true));
            return;
        }
        if self.log.term_at(last_index) == Some(meta.last.term) {
            // Our log holds the snapshot's last entry: it holds everything
            // the snapshot covers, and what follows may already have been
            // acknowledged to this leader (and counted for a commit).
            // Keep it and only move the commit index (etcd-io/raft's
            // `restore` does the same).
            self.receiving_snapshot = None;
            self.log.commit_to(last_index);
            self.send(from, reply(0, true));
            return;
        }
        if offset == 0 {
            self.receiving_snapshot = Some((meta.clone(), BytesMut::new()));
        }
        let expected = match &self.receiving_snapshot {
            Some((m, buf)) if *m == meta => buf.len() as u64,
            _ => 0,
        };
        if offset != expected || self.receiving_snapshot.is_none() {
            self.send(from, reply(expected, false));
            return;
        }
        let (_, buf) = self.receiving_snapshot.as_mut().expect("checked");
        buf.extend_from_slice(&data);
        let received = buf.len() as u64;
        if !done {
            self.send(from, reply(received, false));
            return;
        }
        let (meta, buf) = self.receiving_snapshot.take().expect("checked");
        let last = meta.last;
        self.log.install(Snapshot {
            meta,
            data: buf.freeze(),
        });
        self.snapshot_requested = false;
        self.events.push(Event::SnapshotInstalled { last });
        self.send(from, reply(received, true));
    }

    fn on_timeout_now(&mut self, from: NodeId, term: Term, lease_released: bool) {
        if self.leader_id != Some(from) || !self.is_voter() || self.leader.is_some() {
            return;
        }
        self.start_election(true, lease_released.then_some(term));
    }

    fn tick_leader(&mut self) {
        let now = self.now;
        let l = self.leader_ref();
        if now.saturating_since(l.last_quorum_contact) >= self.cfg.lease_duration {
            self.events.push(Event::SteppedDown {
                term: self.term,
                reason: "lease not renewed by a majority",
            });
            self.become_follower(self.term, None);
            return;
        }
        if let Some(t) = &l.transfer
            && now >= t.deadline
        {
            let to = t.to;
            let sent = t.sent;
            let l = self.leader_mut();
            l.transfer = None;
            // Once TimeoutNow left, the successor may skip the wait: never
            // take the lease back in this term.
            l.lease_revoked = sent;
            self.events.push(Event::TransferAborted { to });
        }
        if now >= self.leader_ref().next_heartbeat {
            self.leader_mut().next_heartbeat = now + self.cfg.heartbeat_interval;
            self.start_round();
        }
        self.process_reads();
    }

    /// Starts a heartbeat round: every follower hears from us, and a majority
    /// acknowledging renews the lease from this instant.
    fn start_round(&mut self) {
        let now = self.now;
        let l = self.leader_mut();
        l.round += 1;
        let round = l.round;
        l.round_starts.push_back((round, now));
        for p in l.progress.values_mut() {
            if let ReplState::Probe { waiting } = &mut p.state {
                *waiting = false;
            }
            if let ReplState::Snapshot { waiting, .. } = &mut p.state {
                *waiting = false;
            }
        }
        for peer in self.peers() {
            self.send_append(peer, true);
        }
        self.update_lease();
    }

    fn update_lease(&mut self) {
        let self_voter = self.is_voter();
        let id = self.cfg.id;
        let hold = self.cfg.lease_hold();
        let (broken, now) = (self.cfg.broken, self.now);
        // Borrow the membership and the leader state side by side: this runs
        // on every acknowledgement, so no copy of the voter set.
        let membership = self.log.membership();
        let quorum = membership.quorum();
        let Some(l) = self.leader.as_mut() else {
            return;
        };
        let mut rounds: Vec<u64> = membership
            .voters
            .iter()
            .map(|v| {
                if *v == id {
                    if self_voter { l.round } else { 0 }
                } else {
                    l.progress.get(v).map_or(0, |p| p.acked_round)
                }
            })
            .collect();
        rounds.sort_unstable_by(|a, b| b.cmp(a));
        let majority_round = rounds.get(quorum - 1).copied().unwrap_or(0);
        if majority_round <= l.acked_round {
            return;
        }
        let mut start = None;
        while let Some(&(r, t)) = l.round_starts.front() {
            if r > majority_round {
                break;
            }
            start = Some(t);
            l.round_starts.pop_front();
        }
        l.acked_round = majority_round;
        let start = if broken == Broken::LeaseFromAck {
            start.map(|_| now)
        } else {
            start
        };
        if let Some(t) = start {
            l.last_quorum_contact = t;
            l.lease_expiry = Some(t + hold);
        }
        self.process_reads();
    }

    fn process_reads(&mut self) {
        let now = self.now;
        let committed = self.log.committed();
        let own_term_committed = self.log.term_at(committed) == Some(self.term);
        let lease = self.lease_remaining(now).is_some();
        let Some(l) = self.leader.as_mut() else {
            return;
        };
        if now < self.serve_after || !own_term_committed || l.pending_reads.is_empty() {
            return;
        }
        let mut need_round = false;
        let next_round = l.round + 1;
        let acked = l.acked_round;
        let mut still = VecDeque::new();
        for mut r in l.pending_reads.drain(..) {
            match r.round {
                None if lease => self.reads.push(ReadState {
                    id: r.id,
                    index: committed,
                }),
                None => {
                    r.round = Some(next_round);
                    r.index = committed;
                    need_round = true;
                    still.push_back(r);
                }
                Some(round) if acked >= round => self.reads.push(ReadState {
                    id: r.id,
                    index: r.index,
                }),
                Some(_) => still.push_back(r),
            }
        }
        l.pending_reads = still;
        if need_round {
            self.start_round();
        }
    }

    fn on_append_response(
        &mut self,
        from: NodeId,
        term: Term,
        success: bool,
        match_index: LogIndex,
        conflict: LogId,
        round: u64,
    ) {
        if self.leader.is_none() || term != self.term {
            return;
        }
        let last = self.log.last_index();
        let first = self.log.first_index();
        let Some(p) = self.leader_mut().progress.get_mut(&from) else {
            return;
        };
        p.acked_round = p.acked_round.max(round);
        if matches!(p.state, ReplState::Snapshot { .. }) {
            // An acknowledgement of an append sent before the snapshot. It
            // is true: a follower never drops a log that holds the
            // snapshot's last entry, so what it acknowledged stays. If it
            // reaches our log, the snapshot is no longer needed.
            if success && match_index <= last && p.acknowledge(match_index) {
                if match_index.next() >= first {
                    p.resume_replication();
                }
                self.maybe_commit();
                self.maybe_send_timeout_now();
                self.send_append(from, false);
            }
        } else if success {
            if match_index > last {
                return; // impossible from an honest follower
            }
            if p.acknowledge(match_index) {
                self.maybe_commit();
                self.maybe_send_timeout_now();
            }
            self.send_append(from, false);
        } else {
            let next = if conflict.term > Term(0) {
                // Skip the follower's whole conflicting term at once (§5.3).
                match self.log.last_index_of_term(conflict.term) {
                    Some(i) => i.next(),
                    None => conflict.index,
                }
            } else {
                conflict.index
            };
            let p = self.leader_mut().progress.get_mut(&from).expect("checked");
            p.back_up(next.max(LogIndex(1)));
            self.send_append(from, false);
        }
        self.update_lease();
    }

    fn on_snapshot_response(
        &mut self,
        from: NodeId,
        term: Term,
        last_index: LogIndex,
        next_offset: u64,
        done: bool,
        round: u64,
    ) {
        if self.leader.is_none() || term != self.term {
            return;
        }
        let current = self.log.snapshot_meta().last.index;
        let Some(p) = self.leader_mut().progress.get_mut(&from) else {
            return;
        };
        p.acked_round = p.acked_round.max(round);
        if let ReplState::Snapshot { .. } = p.state {
            if done {
                p.state = ReplState::Probe { waiting: false };
                p.next_index = p.next_index.max(last_index.next());
                if p.acknowledge(last_index) {
                    self.maybe_commit();
                }
            } else if last_index == current {
                p.state = ReplState::Snapshot {
                    offset: next_offset,
                    waiting: false,
                };
            } else {
                p.start_snapshot();
            }
            self.send_append(from, false);
        }
        self.update_lease();
    }

    /// Sends what `peer` needs: a snapshot chunk, a probe, a window of
    /// entries, or (for a heartbeat) at least an empty AppendEntries.
    fn send_append(&mut self, peer: NodeId, heartbeat: bool) {
        let (max_inflight, max_entries, max_bytes) = (
            self.cfg.max_inflight,
            self.cfg.max_batch_entries,
            self.cfg.max_batch_bytes,
        );
        let last = self.log.last_index();
        let commit = self.log.committed();
        let Some(l) = self.leader.as_mut() else {
            return;
        };
        let round = l.round;
        let Some(p) = l.progress.get_mut(&peer) else {
            return;
        };
        if heartbeat && p.state == ReplState::Replicate && p.inflight.len() >= max_inflight {
            // Window full for a whole round: assume loss and probe again.
            p.back_up(p.match_index.next());
        }
        if p.next_index > last.next() {
            // Beyond our log: only a bad hint could put it there.
            p.back_up(last.next());
        }
        if !matches!(p.state, ReplState::Snapshot { .. })
            && self.log.term_at(p.next_index.prev()).is_none()
        {
            p.start_snapshot();
        }
        let mut out = Vec::new();
        match p.state {
            ReplState::Snapshot { offset, waiting } => {
                if waiting && !heartbeat {
                    return;
                }
                let Some(snap) = self.log.snapshot() else {
                    // Unreachable: next_index is within the log, and below
                    // its first entry only after a compaction.
                    p.back_up(last.next());
                    return;
                };
                let start = (offset as usize).min(snap.data.len());
                let end = (start + self.cfg.snapshot_chunk_bytes).min(snap.data.len());
                p.state = ReplState::Snapshot {
                    offset,
                    waiting: true,
                };
                out.push(MessageBody::Snapshot {
                    meta: snap.meta.clone(),
                    offset: start as u64,
                    data: snap.data.slice(start..end),
                    done: end == snap.data.len(),
                    round,
                });
            }
            ReplState::Probe { waiting } => {
                if waiting && !heartbeat {
                    return;
                }
                let prev_index = p.next_index.prev();
                let entries = self
                    .log
                    .slice(p.next_index, max_entries, max_bytes)
                    .unwrap_or_default();
                p.state = ReplState::Probe { waiting: true };
                out.push(append_body(&self.log, prev_index, entries, commit, round));
            }
            ReplState::Replicate => {
                while p.inflight.len() < max_inflight && p.next_index <= last {
                    let Some(entries) = self.log.slice(p.next_index, max_entries, max_bytes) else {
                        break;
                    };
                    let prev_index = p.next_index.prev();
                    let sent_last = LogIndex(prev_index.0 + entries.len() as u64);
                    p.inflight.push_back(sent_last);
                    p.next_index = sent_last.next();
                    out.push(append_body(&self.log, prev_index, entries, commit, round));
                }
                if out.is_empty() && heartbeat {
                    out.push(append_body(
                        &self.log,
                        p.next_index.prev(),
                        Vec::new(),
                        commit,
                        round,
                    ));
                }
            }
        }
        for body in out {
            self.send(peer, body);
        }
    }

    fn maybe_commit(&mut self) {
        let id = self.cfg.id;
        let m = self.log.membership();
        let last = self.log.last_index();
        let l = self.leader_ref();
        let mut matches: Vec<LogIndex> = m
            .voters
            .iter()
            .map(|v| {
                if *v == id {
                    last
                } else {
                    l.progress.get(v).map_or(LogIndex(0), |p| p.match_index)
                }
            })
            .collect();
        matches.sort_unstable_by(|a, b| b.cmp(a));
        let candidate = matches[m.quorum() - 1];
        // Only an entry of the leader's own term is committed by counting (§5.4.2).
        let own_term = self.log.term_at(candidate) == Some(self.term);
        if candidate > self.log.committed()
            && (own_term || self.cfg.broken == Broken::CommitOldTerm)
        {
            self.log.commit_to(candidate);
            self.process_reads();
            self.maybe_hand_off_after_removal();
        }
    }

    /// A leader whose own removal is committed hands over and steps down.
    fn maybe_hand_off_after_removal(&mut self) {
        if self.is_voter() || self.log.membership_index() > self.log.committed() {
            return;
        }
        let serving = self.now >= self.serve_after;
        let successor = self
            .leader_ref()
            .progress
            .iter()
            .filter(|(id, _)| self.log.membership().is_voter(**id))
            .max_by_key(|(_, p)| p.match_index)
            .map(|(id, _)| *id);
        self.leader_mut().lease_revoked = true;
        if let Some(to) = successor {
            self.send(
                to,
                MessageBody::TimeoutNow {
                    lease_released: serving,
                },
            );
        }
        self.events.push(Event::SteppedDown {
            term: self.term,
            reason: "removed from the membership",
        });
        self.become_follower(self.term, None);
    }

    fn maybe_send_timeout_now(&mut self) {
        let last = self.log.last_index();
        let now = self.now;
        let Some(l) = self.leader.as_mut() else {
            return;
        };
        let Some(t) = l.transfer.as_mut() else {
            return;
        };
        if t.sent || l.progress.get(&t.to).is_none_or(|p| p.match_index < last) {
            return;
        }
        t.sent = true;
        let to = t.to;
        let lease_released = l.lease_revoked && now >= self.serve_after;
        self.send(to, MessageBody::TimeoutNow { lease_released });
    }
}

fn append_body(
    log: &RaftLog,
    prev_index: LogIndex,
    entries: Vec<Entry>,
    commit: LogIndex,
    round: u64,
) -> MessageBody {
    let prev = LogId {
        term: log.term_at(prev_index).expect("prev entry is in the log"),
        index: prev_index,
    };
    let sent_last = LogIndex(prev_index.0 + entries.len() as u64);
    MessageBody::Append {
        prev,
        entries,
        commit: commit.min(sent_last),
        round,
    }
}
