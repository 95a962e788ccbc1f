//! One replica's logic between the consensus core and the key-value state
//! machine, without I/O: the part of a node that decides, shared by the
//! tokio node loop (`server::driver`) and the deterministic simulator.
//!
//! In the style of openraft's Engine: calls go in (`propose_write`, `read`,
//! `step`, `tick`, `advance`) with the time passed as an argument, and
//! decisions come out as [`Effect`]s that the caller carries out (answer a
//! client, learn member addresses). The caller owns every kind of I/O:
//! persisting and sending what `ready()` returns, saving snapshots, clocks,
//! metrics. Here live the rules whose order a client can observe:
//! - a write is answered once its entry is applied, with the state machine's
//!   answer if the entry is the one proposed (same term), else as
//!   outcome-unknown (another leader's entry took its index);
//! - pending writes and changes fail as outcome-unknown when leadership is
//!   lost or a snapshot replaces their entries;
//! - a read is answered once everything up to its read index is applied;
//! - the state machine is restored from a snapshot and snapshotted when due
//!   ([`SnapshotPolicy`]: the core's entry count, weighed against the size
//!   of the last snapshot);
//! - cluster time: proposals are stamped from the applied cluster time and
//!   the monotonic time since, an idle leader proposes time entries, and
//!   reads are evaluated at the applied cluster time (see [`clock`]); never
//!   a wall clock.
//!
//! Nothing here reads a clock, spawns a task or touches a socket.

pub mod clock;
mod handoff;
mod pending;
pub mod state_check;
#[cfg(test)]
mod tests;

use crate::kv::{self, Limits, RangeView, StateMachine};
use crate::pb;
use crate::raft::{
    self, ConfChange, Entry, Instant, LogIndex, NodeId, Payload, ProposeError, Raft, ReadState,
    Ready, Role, Snapshot,
};
use bytes::Bytes;
use clock::{ClusterClock, SESSION_TIME_ENTRY_INTERVAL, TIME_ENTRY_INTERVAL};
use handoff::{PendingTransfer, TransferOutcome};
pub use handoff::{StopHandoff, TRANSFER_LIMIT};
use pending::Pending;
use prost::Message as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use state_check::{Comparison, StateChecks};

/// Who waits for an answer, per kind of request: a oneshot sender in the
/// node, a client number in the simulator. The replica only stores them and
/// hands them back in [`Effect`]s.
pub trait Callers {
    type Write;
    type Change;
    type Read;
    type Transfer;
}

/// A read the leader answers from its applied state.
#[derive(Debug, Clone)]
pub enum ReadKind {
    Get(Bytes),
    Ttl(Bytes),
    /// One page of a prefix (`StateMachine::range`).
    Range(pb::RangeRequest),
    /// The whole applied state, for a backup (docs/operations.md,
    /// "Backup and restore").
    State,
}

/// The answer to a read.
#[derive(Debug, Clone)]
pub enum ReadAnswer {
    Get(pb::GetResponse),
    Ttl(pb::TtlResponse),
    Range(pb::RangeResponse),
    State(Box<StateCopy>),
}

/// The applied state machine (an O(1) copy) with the log position it is at
/// and the voters in force then.
#[derive(Debug, Clone)]
pub struct StateCopy {
    pub sm: StateMachine,
    pub index: u64,
    pub term: u64,
    pub voters: Vec<u64>,
}

/// A range read with the state it reads (an O(1) copy).
#[derive(Debug, Clone)]
pub struct RangeScan {
    view: RangeView,
    request: pb::RangeRequest,
}

impl RangeScan {
    /// The page (and count) the read answers.
    pub fn run(&self) -> ReadAnswer {
        ReadAnswer::Range(self.view.range(&self.request))
    }
}

/// Why a request was not answered by the state machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// This node does not lead; the leader it knows of, if any.
    NotLeader(Option<NodeId>),
    /// The request was proposed but may or may not take effect (leadership
    /// was lost, or its index went to another entry or into a snapshot):
    /// retry with the same session.
    OutcomeUnknown(String),
    /// The request is malformed.
    Invalid(String),
    /// Refused by the state machine's checks before it was proposed: the
    /// answer is this error, exactly as if the entry had been applied.
    Rejected(pb::KvError),
    /// The leader cannot take it now (a change or a transfer under way).
    Busy(String),
    /// This node is stopping: it takes no new requests.
    Stopping,
    /// The learner to promote has not caught up with the log yet.
    LearnerBehind(NodeId),
}

/// A decision for the caller to carry out.
#[derive(Debug)]
pub enum Effect<C: Callers> {
    /// Answer a write. `cluster_ms` is the cluster time at which the state
    /// machine answered (that of the applied entry).
    Written {
        caller: C::Write,
        result: Result<pb::WriteResponse, Refusal>,
        cluster_ms: u64,
    },
    /// Answer a membership change with its log index.
    Changed {
        caller: C::Change,
        result: Result<u64, Refusal>,
    },
    /// Answer a leadership transfer with the node that now leads.
    Transferred {
        caller: C::Transfer,
        result: Result<NodeId, Refusal>,
    },
    /// Answer a read; `cluster_ms` is the cluster time it was evaluated at.
    Read {
        caller: C::Read,
        result: Result<ReadAnswer, Refusal>,
        cluster_ms: u64,
    },
    /// Answer a range read by running `scan`, off the node loop: counting
    /// a large prefix takes a while (a 1M-key scan must not hold up
    /// heartbeats). It holds the applied state at release, so the answer is
    /// the same whenever it runs.
    Scan {
        caller: C::Read,
        scan: RangeScan,
        cluster_ms: u64,
    },
    /// The member addresses kept in the state machine may have changed (a
    /// `MemberAddrs` entry was applied, or a snapshot restored).
    MembersChanged,
    /// A state check was applied at `index`: hash `state` (a copy of the
    /// state machine there) off the event loop and hand the hash to
    /// [`Replica::state_hashed`].
    HashState { index: u64, state: StateMachine },
    /// This replica's hash at a state check was compared with a report.
    StateCompared(Comparison),
}

/// What an audited replica saw after one entry or restore (see
/// [`Replica::set_audit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    pub index: u64,
    pub hash: u64,
    /// The first broken invariant of the state machine, if any.
    pub broken: Option<String>,
    /// The state came from a snapshot rather than from applying the entry.
    pub restored: bool,
}

/// The part of a `Ready` that is applied, once the rest is persisted and sent.
#[derive(Debug, Default)]
pub struct Applied {
    pub snapshot: Option<Snapshot>,
    pub committed: Vec<Entry>,
    pub reads: Vec<ReadState>,
    pub failed_reads: Vec<u64>,
    pub snapshot_due: bool,
    /// `snapshot`'s state machine if the caller already decoded it (off its
    /// event loop, see [`Replica::limits`]); decoded in `advance` if `None`.
    pub restored: Option<StateMachine>,
}

impl Applied {
    /// Takes the applying half out of `ready`; the snapshot stays there too
    /// (it is persisted before it is restored; its data is shared, not copied).
    pub fn take(ready: &mut Ready) -> Applied {
        Applied {
            snapshot: ready.snapshot.clone(),
            committed: std::mem::take(&mut ready.committed),
            reads: std::mem::take(&mut ready.reads),
            failed_reads: std::mem::take(&mut ready.failed_reads),
            snapshot_due: ready.snapshot_due,
            restored: None,
        }
    }
}

/// When a snapshot the core asks for (every `snapshot_threshold` applied
/// entries) is worth writing: only once the log applied since the last
/// snapshot is at least `log_ratio` times that snapshot's size. Each
/// snapshot then costs at most `1 / log_ratio` bytes written per byte of
/// log, whatever the size of the state, instead of a whole state rewritten
/// every `snapshot_threshold` small writes (see docs/node.md, Snapshots).
///
/// Both bounds are stretched by a per-node, per-snapshot stagger in
/// `[1, 1 + MAX_STAGGER)`, drawn from the core's seed: nodes that apply the
/// same entries would otherwise all snapshot at the same index, and a
/// majority busy encoding and writing at once is what costs a leader its
/// lease (ZooKeeper randomizes its `snapCount` for the same reason).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SnapshotPolicy {
    /// 0 snapshots on the entry count alone.
    pub log_ratio: f64,
}

/// The default [`SnapshotPolicy::log_ratio`].
pub const DEFAULT_SNAPSHOT_LOG_RATIO: f64 = 0.5;

/// How far past the policy's bounds a node may put off a snapshot, as a
/// fraction of them (see [`SnapshotPolicy`]).
pub const MAX_STAGGER: f64 = 0.5;

/// What an applied entry is counted as in the log size: its payload and
/// about what its WAL record adds (frame, index, term).
const ENTRY_OVERHEAD_BYTES: u64 = 16;

impl Default for SnapshotPolicy {
    fn default() -> SnapshotPolicy {
        SnapshotPolicy {
            log_ratio: DEFAULT_SNAPSHOT_LOG_RATIO,
        }
    }
}

impl SnapshotPolicy {
    /// Whether `log_bytes` of log since a snapshot of `snapshot_bytes`
    /// justify writing the next one, put off by `stagger` (≥ 1).
    pub fn worth_it(&self, log_bytes: u64, snapshot_bytes: u64, stagger: f64) -> bool {
        log_bytes as f64 >= self.log_ratio * snapshot_bytes as f64 * stagger
    }
}

/// The stagger of the snapshot after the one at `index` on the node whose
/// core has `seed`: in `[1, 1 + MAX_STAGGER)`, the same on every call
/// (so the simulator replays it), different across nodes and snapshots.
fn stagger(seed: u64, index: u64) -> f64 {
    let mut rng = StdRng::seed_from_u64(seed ^ index.rotate_left(32));
    rng.random_range(1.0..1.0 + MAX_STAGGER)
}

/// The consensus core, the state machine and the requests waiting on them.
pub struct Replica<C: Callers> {
    raft: Raft,
    sm: StateMachine,
    limits: Limits,
    // Invariant: applied <= the core's commit index.
    applied: u64,
    snapshot_index: u64,
    pending: Pending<C>,
    clock: ClusterClock,
    /// Whether this node led at the end of the previous `advance`.
    was_leader: bool,
    /// Set by the core's hint once applied; cleared by `take_snapshot`,
    /// `begin_snapshot` and a restore.
    snapshot_due: bool,
    snapshot_policy: SnapshotPolicy,
    /// The size of the latest snapshot taken or restored here (0 if unknown:
    /// none yet, or the one restored at start was not measured).
    snapshot_bytes: u64,
    /// The size of the entries applied since that snapshot's index (since
    /// `begin_snapshot`'s, while one is encoded).
    log_bytes: u64,
    checks: StateChecks,
    /// `Some` while audited: the hash and invariants after every entry.
    audit: Option<Vec<Audit>>,
    /// A leadership transfer a caller waits on.
    transfer: Option<PendingTransfer<C::Transfer>>,
    /// Set once the node is stopping: until when it waits for another node
    /// to take over before it stops anyway.
    stopping_until: Option<Instant>,
    effects: Vec<Effect<C>>,
}

impl<C: Callers> Replica<C> {
    /// A replica whose state machine `sm` has applied up to `applied` (its
    /// snapshot's index; the core hands the rest of the log over again),
    /// started at `now` on the node's monotonic clock.
    pub fn new(
        raft: Raft,
        sm: StateMachine,
        applied: u64,
        limits: Limits,
        now: Instant,
    ) -> Replica<C> {
        let was_leader = raft.role() == Role::Leader;
        Replica {
            clock: ClusterClock::new(sm.time_ms(), now),
            raft,
            sm,
            limits,
            applied,
            snapshot_index: applied,
            pending: Pending::default(),
            was_leader,
            snapshot_due: false,
            snapshot_policy: SnapshotPolicy::default(),
            snapshot_bytes: 0,
            log_bytes: 0,
            checks: StateChecks::new(None),
            audit: None,
            transfer: None,
            stopping_until: None,
            effects: Vec::new(),
        }
    }

    /// Sets the time between the state checks this node proposes while it
    /// leads (`None`: only when asked, by `raftctl check`).
    pub fn set_state_check_interval(&mut self, interval: Option<std::time::Duration>) {
        self.checks = StateChecks::new(interval);
    }

    /// Audits every entry applied from now on: its hash and the state
    /// machine's invariants, for [`Replica::take_audit`]. Costs a scan of
    /// the whole state per entry, so only the simulator turns it on.
    pub fn set_audit(&mut self, on: bool) {
        self.audit = on.then(Vec::new);
    }

    /// What the audit saw since the last call, in order.
    pub fn take_audit(&mut self) -> Vec<Audit> {
        self.audit.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn audit_now(&mut self, restored: bool) {
        if let Some(audit) = &mut self.audit {
            audit.push(Audit {
                index: self.sm.applied_index(),
                hash: self.sm.state_hash(),
                broken: self.sm.check_invariants().err(),
                restored,
            });
        }
    }

    /// This replica's hash at the state check at `index`, computed from the
    /// copy in [`Effect::HashState`]. Compares the reports that waited for
    /// it; the leader reports it to the others.
    pub fn state_hashed(&mut self, index: u64, hash: u64, now: Instant) {
        for c in self.checks.hashed(index, hash) {
            self.effects.push(Effect::StateCompared(c));
        }
        if self.raft.role() == Role::Leader {
            let report = pb::StateReportCmd {
                index,
                hash,
                reporter: self.raft.id().0,
            };
            let command = pb::Command {
                op: Some(pb::command::Op::StateReport(report)),
            };
            // Refused only during a transfer: the next check reports again.
            let _ = self.propose(None, Some(command), now);
        }
    }

    /// This replica's hashes at its latest state checks (index, hash).
    pub fn state_hashes(&self) -> Vec<(u64, u64)> {
        self.checks.hashes().collect()
    }

    /// How many state checks found this replica's hash unequal to a report.
    pub fn state_mismatches(&self) -> u64 {
        self.checks.mismatches()
    }

    /// Sets when a snapshot is worth writing, and the size of the snapshot
    /// the state machine was restored from at start (0 if none), which the
    /// policy weighs the log against until the next snapshot.
    pub fn set_snapshot_policy(&mut self, policy: SnapshotPolicy, restored_bytes: u64) {
        self.snapshot_policy = policy;
        self.snapshot_bytes = restored_bytes;
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The limits a restored state machine is built with.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn state_machine(&self) -> &StateMachine {
        &self.sm
    }

    /// The index of the last entry applied (or restored from a snapshot).
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// The index of the latest snapshot taken or restored here.
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot_index
    }

    /// Requests waiting for an entry (writes and membership changes).
    pub fn pending_proposals(&self) -> usize {
        self.pending.proposals()
    }

    /// The decisions made since the last call, in the order they were made.
    pub fn take_effects(&mut self) -> Vec<Effect<C>> {
        std::mem::take(&mut self.effects)
    }

    pub fn step(&mut self, m: raft::Message, now: Instant) {
        self.raft.step(m, now);
    }

    /// The connection to `peer` broke (see `Raft::connection_lost`).
    pub fn connection_lost(&mut self, peer: NodeId, now: Instant) {
        self.raft.connection_lost(peer, now);
    }

    /// Time passes: the core's timers, and a time entry if this node leads,
    /// has been idle, and cluster time is needed (keys with a deadline, or
    /// sessions).
    pub fn tick(&mut self, now: Instant) {
        self.raft.tick(now);
        self.settle_transfer(false, Some(now));
        if self.raft.role() != Role::Leader {
            return;
        }
        if self.checks.due(now, self.applied)
            && self.propose(None, Some(state_check()), now).is_ok()
        {
            self.checks.proposed(now, self.applied);
        }
        let interval = if self.sm.has_deadlines() {
            TIME_ENTRY_INTERVAL
        } else if self.sm.has_sessions() {
            SESSION_TIME_ENTRY_INTERVAL
        } else {
            return;
        };
        if self.clock.time_entry_due(now, interval) {
            // Refused only while a transfer is under way: tried next tick.
            let _ = self.propose(None, None, now);
        }
    }

    /// The leader this node would name to a client: itself only while it leads.
    pub fn leader_hint(&self) -> Option<NodeId> {
        self.raft
            .leader()
            .filter(|l| *l != self.raft.id() || self.raft.role() == Role::Leader)
    }

    /// How a refusal of the core reads to a client.
    pub fn refusal(&self, e: ProposeError) -> Refusal {
        match e {
            ProposeError::NotLeader { .. } => Refusal::NotLeader(self.leader_hint()),
            ProposeError::Busy(s) => Refusal::Busy(s),
            ProposeError::LearnerBehind(id) => Refusal::LearnerBehind(id),
            ProposeError::Invalid(s) => Refusal::Invalid(s),
        }
    }

    fn refuse_write(&mut self, caller: C::Write, why: Refusal) {
        self.effects.push(Effect::Written {
            caller,
            result: Err(why),
            cluster_ms: self.sm.time_ms(),
        });
    }

    /// Proposes a client's write; it is answered once applied (or refused now).
    pub fn propose_write(&mut self, req: pb::WriteRequest, caller: C::Write, now: Instant) {
        self.propose_write_as(req, String::new(), caller, now)
    }

    /// [`Replica::propose_write`] on behalf of the authenticated `user`
    /// (empty: none), which the state machine checks when it applies the
    /// entry (docs/security.md, "Users and roles").
    pub fn propose_write_as(
        &mut self,
        req: pb::WriteRequest,
        user: String,
        caller: C::Write,
        now: Instant,
    ) {
        if self.is_stopping() {
            return self.refuse_write(caller, Refusal::Stopping);
        }
        if self.raft.role() != Role::Leader {
            return self.refuse_write(caller, Refusal::NotLeader(self.leader_hint()));
        }
        let Some(command) = req.command else {
            let why = Refusal::Invalid("write without a command".into());
            return self.refuse_write(caller, why);
        };
        if let Err(e) = self.sm.validate(&command) {
            return self.refuse_write(caller, Refusal::Rejected(e));
        }
        let is_check = matches!(command.op, Some(pb::command::Op::StateCheck(_)));
        if is_check && self.checks.too_soon(now) {
            let why = format!(
                "a state check was proposed less than {:?} ago; ask again",
                state_check::MIN_GAP
            );
            return self.refuse_write(caller, Refusal::Busy(why));
        }
        if let Err(e) = self.sm.auth().check(&user, kv::Need::of(&command)) {
            return self.refuse_write(caller, Refusal::Rejected(e));
        }
        match self.propose_as(req.session, Some(command), user, now) {
            Ok(id) => {
                if is_check {
                    self.checks.proposed(now, self.applied);
                }
                self.pending.add_write(id, caller)
            }
            Err(e) => {
                let why = self.refusal(e);
                self.refuse_write(caller, why)
            }
        }
    }

    /// Replicates the addresses of a member about to be added, in the log
    /// before its membership change, so every node (and every future
    /// leader) can reach it. If this fails, the change itself fails next.
    pub fn propose_addresses(
        &mut self,
        addrs: pb::MemberAddrsCmd,
        now: Instant,
    ) -> Result<(), ProposeError> {
        if self.is_stopping() {
            return Err(ProposeError::Busy("the node is stopping".into()));
        }
        let command = pb::Command {
            op: Some(pb::command::Op::MemberAddrs(addrs)),
        };
        self.propose(None, Some(command), now).map(|_| ())
    }

    /// Proposes an entry stamped with this node's measure of cluster time
    /// (a time entry if `command` is None).
    fn propose(
        &mut self,
        session: Option<pb::Session>,
        command: Option<pb::Command>,
        now: Instant,
    ) -> Result<raft::LogId, ProposeError> {
        self.propose_as(session, command, String::new(), now)
    }

    fn propose_as(
        &mut self,
        session: Option<pb::Session>,
        command: Option<pb::Command>,
        user: String,
        now: Instant,
    ) -> Result<raft::LogId, ProposeError> {
        let proposal = pb::Proposal {
            session,
            stamp_ms: self.clock.stamp(now),
            command,
            user,
        };
        let id = self.raft.propose(proposal.encode_to_vec().into(), now)?;
        self.clock.proposed(now);
        Ok(id)
    }

    /// Proposes a membership change; answered with its index once applied.
    /// A change with a session `context` is exactly-once: a retry of one
    /// already applied is answered with its index, not evaluated again
    /// (docs/consensus.md, "Membership changes, exactly once").
    pub fn propose_change(
        &mut self,
        change: ConfChange,
        context: Option<pb::ChangeContext>,
        caller: C::Change,
        now: Instant,
    ) {
        if self.is_stopping() {
            let result = Err(Refusal::Stopping);
            return self.effects.push(Effect::Changed { caller, result });
        }
        let mut encoded = Bytes::new();
        if let Some(context) = context {
            if let Some(result) = self.answered_change(&context) {
                return self.effects.push(Effect::Changed { caller, result });
            }
            encoded = context.encode_to_vec().into();
        }
        match self.raft.propose_conf_change(change, encoded, now) {
            Ok(id) => self.pending.add_change(id, caller),
            Err(e) => {
                let result = Err(self.refusal(e));
                self.effects.push(Effect::Changed { caller, result });
            }
        }
    }

    /// The answer to a change through a session that must not be proposed:
    /// a retry of one applied (its index), or a refusal of the session's.
    /// Asked of a leader only once every config entry in its log is
    /// applied, so that the session has seen each (a node that does not
    /// lead leaves the refusal to the core).
    fn answered_change(&self, context: &pb::ChangeContext) -> Option<Result<u64, Refusal>> {
        if self.raft.role() != Role::Leader {
            return None;
        }
        let last_change = self.raft.membership_index().0;
        if self.applied < last_change {
            let why = format!("the membership change at index {last_change} is not applied yet");
            return Some(Err(Refusal::Busy(why)));
        }
        match self.sm.admit_change(context) {
            Ok(None) => None,
            Ok(Some(index)) => Some(Ok(index)),
            Err(e) => Some(Err(Refusal::Rejected(e))),
        }
    }

    /// Starts a linearizable read; answered once the core releases it and
    /// everything up to its read index is applied.
    pub fn read(&mut self, kind: ReadKind, caller: C::Read, now: Instant) {
        if self.is_stopping() {
            return self.read_refused(caller, Refusal::Stopping);
        }
        let id = self.pending.next_read_id();
        match self.raft.read(id, now) {
            Ok(()) => self.pending.add_read(id, kind, caller),
            Err(e) => {
                let result = Err(self.refusal(e));
                let cluster_ms = self.sm.time_ms();
                self.effects.push(Effect::Read {
                    caller,
                    result,
                    cluster_ms,
                });
            }
        }
    }

    /// The core's batch. The caller persists its hard state, entries and
    /// snapshot (durably first if `must_sync`), acknowledges that with
    /// [`Replica::persisted`], sends its messages, and then hands the
    /// applying half back to [`Replica::advance`].
    pub fn ready(&mut self) -> Ready {
        let ready = self.raft.ready();
        // Only while a caller waits for a transfer: not a scan per batch.
        if self.transfer.is_some() {
            let aborted = ready
                .events
                .iter()
                .any(|e| matches!(e, raft::Event::TransferAborted { .. }));
            self.settle_transfer(aborted, None);
        }
        ready
    }

    /// Hands leadership to `to`, or to the best successor if `None`; the
    /// caller is answered once `to` leads or the transfer fails.
    pub fn transfer_leadership(&mut self, to: Option<NodeId>, caller: C::Transfer, now: Instant) {
        if self.is_stopping() {
            let result = Err(Refusal::Stopping);
            return self.effects.push(Effect::Transferred { caller, result });
        }
        let Some(to) = to.or_else(|| self.best_successor(now)) else {
            let result = Err(Refusal::Busy("no voter to transfer leadership to".into()));
            return self.effects.push(Effect::Transferred { caller, result });
        };
        if let Err(e) = self.raft.transfer_leadership(to, now) {
            let result = Err(self.refusal(e));
            return self.effects.push(Effect::Transferred { caller, result });
        }
        let give_up_at = now + TRANSFER_LIMIT;
        let pending = PendingTransfer {
            to,
            give_up_at,
            caller,
        };
        if let Some(old) = self.transfer.replace(pending) {
            let why = format!("superseded by a transfer to node {to}");
            let result = Err(Refusal::Busy(why));
            self.effects.push(Effect::Transferred {
                caller: old.caller,
                result,
            });
        }
    }

    /// Answers the pending transfer if it is decided (see `handoff::judge`).
    fn settle_transfer(&mut self, aborted: bool, now: Option<Instant>) {
        let Some(t) = &self.transfer else {
            return;
        };
        let (me, leader) = (self.raft.id(), self.raft.leader());
        let result = match handoff::judge(t.to, me, leader, aborted, t.give_up_at, now) {
            TransferOutcome::Waiting => return,
            TransferOutcome::Done => Ok(t.to),
            TransferOutcome::Failed(why) => {
                Err(Refusal::Busy(format!("leadership transfer failed: {why}")))
            }
        };
        if let Some(t) = self.transfer.take() {
            self.effects.push(Effect::Transferred {
                caller: t.caller,
                result,
            });
        }
    }

    /// The voter with the highest match index: the one a graceful hand-off
    /// goes to, as it needs the fewest entries to catch up.
    pub fn best_successor(&self, now: Instant) -> Option<NodeId> {
        let s = self.raft.status(now);
        s.progress
            .iter()
            .filter(|p| p.id != self.raft.id() && s.membership.is_voter(p.id))
            .max_by_key(|p| p.match_index)
            .map(|p| p.id)
    }

    /// Starts stopping: from now on every new request is refused with
    /// [`Refusal::Stopping`]; a leader hands leadership to its best
    /// successor, so that clients find a new leader without waiting for an
    /// election timeout. [`Replica::stop_due`] says when to stop.
    pub fn stop(&mut self, grace: std::time::Duration, now: Instant) -> StopHandoff {
        if self.stopping_until.is_some() {
            return StopHandoff::AlreadyStopping;
        }
        self.stopping_until = Some(now + grace);
        if self.raft.role() != Role::Leader {
            return StopHandoff::NotLeader;
        }
        let Some(to) = self.best_successor(now) else {
            return StopHandoff::NoSuccessor;
        };
        match self.raft.transfer_leadership(to, now) {
            Ok(()) => StopHandoff::TransferTo(to),
            Err(e) => StopHandoff::Refused(to, e),
        }
    }

    /// Whether [`Replica::stop`] was called.
    pub fn is_stopping(&self) -> bool {
        self.stopping_until.is_some()
    }

    /// Whether a stopping node may stop now: it no longer leads (the
    /// hand-off is done, or it never led), or its grace period is over.
    pub fn stop_due(&self, now: Instant) -> bool {
        self.stopping_until
            .is_some_and(|until| self.raft.role() != Role::Leader || now >= until)
    }

    /// What the last `Ready` asked to persist is durable (see
    /// `Raft::advance`); the next `ready()` may follow.
    pub fn persisted(&mut self, durable: raft::Durable) {
        self.raft.advance(durable);
    }

    /// Heartbeats and their answers, which may leave while the last
    /// `Ready` is still being persisted (`Raft::take_heartbeats`).
    pub fn take_heartbeats(&mut self) -> Vec<raft::Message> {
        self.raft.take_heartbeats()
    }

    /// Restores, applies and answers what a persisted `Ready` released, in
    /// the order a client may observe: snapshot, committed entries (writes
    /// answered), reads, then the failure of what a lost leadership leaves.
    /// An error is a snapshot that does not restore: the node must stop.
    pub fn advance(&mut self, a: Applied, now: Instant) -> Result<(), String> {
        if let Some(snap) = &a.snapshot {
            self.restore(snap, a.restored, now)?;
        }
        for entry in a.committed {
            self.apply(entry, now);
        }
        for r in a.reads {
            self.pending.release_read(r);
        }
        self.answer_reads();
        for id in a.failed_reads {
            if let Some((_, caller)) = self.pending.take_read(id) {
                self.read_refused(caller, Refusal::NotLeader(self.leader_hint()));
            }
        }
        let leads = self.raft.role() == Role::Leader;
        if self.was_leader && !leads {
            self.fail_all("leadership lost");
            self.clock.lost_leadership();
        }
        self.was_leader = leads;
        self.snapshot_due |= a.snapshot_due;
        Ok(())
    }

    fn read_refused(&mut self, caller: C::Read, why: Refusal) {
        let cluster_ms = self.sm.time_ms();
        self.effects.push(Effect::Read {
            caller,
            result: Err(why),
            cluster_ms,
        });
    }

    fn restore(
        &mut self,
        snap: &Snapshot,
        decoded: Option<StateMachine>,
        now: Instant,
    ) -> Result<(), String> {
        let index = snap.meta.last.index.0;
        self.sm = match decoded {
            Some(sm) => sm,
            None => StateMachine::restore(self.limits, &snap.data)
                .map_err(|e| format!("snapshot at index {index} does not restore: {e:?}"))?,
        };
        self.clock.applied(self.sm.time_ms(), now, true);
        self.applied = index;
        self.snapshot_index = index;
        self.audit_now(true);
        // The core counts its entries from the installed snapshot again.
        self.snapshot_due = false;
        self.snapshot_bytes = snap.data.len() as u64;
        self.log_bytes = 0;
        self.effects.push(Effect::MembersChanged);
        // Proposals the snapshot covers may or may not be in it.
        let why = || Refusal::OutcomeUnknown("replaced by a snapshot".into());
        let cluster_ms = self.sm.time_ms();
        for caller in self.pending.take_writes_up_to(index) {
            let result = Err(why());
            self.effects.push(Effect::Written {
                caller,
                result,
                cluster_ms,
            });
        }
        for caller in self.pending.take_changes_up_to(index) {
            let result = Err(why());
            self.effects.push(Effect::Changed { caller, result });
        }
        Ok(())
    }

    fn apply(&mut self, entry: Entry, now: Instant) {
        let index = entry.index().0;
        if index <= self.applied {
            return;
        }
        debug_assert_eq!(index, self.applied + 1, "committed entries apply in order");
        self.applied = index;
        self.log_bytes += entry_bytes(&entry);
        let term = entry.term();
        match &entry.payload {
            Payload::Command(bytes) => {
                let response = self.sm.apply(index, bytes);
                self.clock.applied(self.sm.time_ms(), now, false);
                self.audit_now(false);
                self.after_apply(index, &response);
                if let Some((proposed, caller)) = self.pending.take_write(index) {
                    let result = if proposed == term {
                        Ok(response)
                    } else {
                        Err(replaced(index))
                    };
                    let cluster_ms = self.sm.time_ms();
                    self.effects.push(Effect::Written {
                        caller,
                        result,
                        cluster_ms,
                    });
                }
            }
            Payload::Noop => {
                if let Some((_, caller)) = self.pending.take_write(index) {
                    self.refuse_write(caller, replaced(index));
                }
            }
            Payload::Config { context, .. } => {
                self.sm.change_applied(index, context);
                if let Some((proposed, caller)) = self.pending.take_change(index) {
                    let result = if proposed == term {
                        Ok(index)
                    } else {
                        Err(replaced(index))
                    };
                    self.effects.push(Effect::Changed { caller, result });
                }
            }
        }
    }

    /// What an applied command asks of the replica beyond its answer.
    fn after_apply(&mut self, index: u64, response: &pb::WriteResponse) {
        use pb::write_response::Result as Outcome;
        match &response.result {
            Some(Outcome::MemberAddrs(_)) => self.effects.push(Effect::MembersChanged),
            Some(Outcome::StateCheck(_)) => {
                self.checks.applied(index);
                let state = self.sm.clone();
                self.effects.push(Effect::HashState { index, state });
            }
            Some(Outcome::StateReport(r)) if r.reporter != self.raft.id().0 => {
                if let state_check::Outcome::Compared(c) =
                    self.checks.report(r.index, r.reporter, r.hash)
                {
                    self.effects.push(Effect::StateCompared(c));
                }
            }
            _ => {}
        }
    }

    /// Answers the released reads whose index is applied, at the applied
    /// cluster time (on the lease path too: no clock is read here).
    fn answer_reads(&mut self) {
        let t = self.sm.time_ms();
        for (kind, caller) in self.pending.reads_applied(self.applied) {
            let answer = match kind {
                ReadKind::Get(key) => ReadAnswer::Get(self.sm.get(&key)),
                ReadKind::Ttl(key) => ReadAnswer::Ttl(self.sm.ttl(&key)),
                ReadKind::Range(request) => {
                    let view = self.sm.range_view();
                    let scan = RangeScan { view, request };
                    self.effects.push(Effect::Scan {
                        caller,
                        scan,
                        cluster_ms: t,
                    });
                    continue;
                }
                ReadKind::State => match self.raft.term_at(LogIndex(self.applied)) {
                    Some(term) => ReadAnswer::State(Box::new(StateCopy {
                        sm: self.sm.clone(),
                        index: self.applied,
                        term: term.0,
                        voters: self.raft.membership().voters.iter().map(|v| v.0).collect(),
                    })),
                    None => {
                        let why = format!("the term of applied entry {} is unknown", self.applied);
                        self.effects.push(Effect::Read {
                            caller,
                            result: Err(Refusal::Busy(why)),
                            cluster_ms: t,
                        });
                        continue;
                    }
                },
            };
            self.effects.push(Effect::Read {
                caller,
                result: Ok(answer),
                cluster_ms: t,
            });
        }
    }

    /// Fails every waiting request: proposals as outcome-unknown (they may
    /// still commit under the next leader, or not), reads as not-leader.
    pub fn fail_all(&mut self, why: &str) {
        let cluster_ms = self.sm.time_ms();
        let waiting = self.pending.take_all();
        for caller in waiting.writes {
            let result = Err(Refusal::OutcomeUnknown(format!(
                "{why} before the write committed"
            )));
            self.effects.push(Effect::Written {
                caller,
                result,
                cluster_ms,
            });
        }
        for caller in waiting.changes {
            let result = Err(Refusal::OutcomeUnknown(format!(
                "{why} before the change committed"
            )));
            self.effects.push(Effect::Changed { caller, result });
        }
        for caller in waiting.reads {
            self.read_refused(caller, Refusal::NotLeader(self.leader_hint()));
        }
        if let Some(t) = self.transfer.take() {
            let result = Err(Refusal::Busy(format!("{why} before the transfer ended")));
            self.effects.push(Effect::Transferred {
                caller: t.caller,
                result,
            });
        }
    }

    /// Whether the state machine should be snapshotted now: the core asked
    /// (`snapshot_threshold` entries applied since the last snapshot), and
    /// the log applied since is large enough beside that snapshot
    /// ([`SnapshotPolicy`]). The core's request stays latched until then.
    pub fn snapshot_due(&self) -> bool {
        if !self.snapshot_due {
            return false;
        }
        let stagger = self.stagger();
        let entries = self.applied - self.snapshot_index;
        let threshold = self.raft.config().snapshot_threshold;
        entries as f64 >= threshold as f64 * stagger
            && self
                .snapshot_policy
                .worth_it(self.log_bytes, self.snapshot_bytes, stagger)
    }

    /// This node's stagger for the next snapshot (see [`SnapshotPolicy`]).
    fn stagger(&self) -> f64 {
        stagger(self.raft.config().seed, self.snapshot_index)
    }

    /// Snapshots the state machine at the applied index and compacts the
    /// core's log; the caller saves the snapshot.
    pub fn take_snapshot(&mut self) -> Snapshot {
        self.snapshot_due = false;
        let snap = self
            .raft
            .compact(LogIndex(self.applied), self.sm.snapshot());
        self.snapshot_index = self.applied;
        self.snapshot_bytes = snap.data.len() as u64;
        self.log_bytes = 0;
        snap
    }

    /// Starts a snapshot encoded elsewhere (off the node's event loop): the
    /// applied index and a copy of the state machine at it. The core asks
    /// for no other snapshot until [`Replica::finish_snapshot`]; the caller
    /// runs one at a time.
    pub fn begin_snapshot(&mut self) -> (u64, StateMachine) {
        self.snapshot_due = false;
        // What is applied from now on is the log after this snapshot.
        self.log_bytes = 0;
        (self.applied, self.sm.clone())
    }

    /// Compacts the core's log with `data`, the encoding of
    /// [`Replica::begin_snapshot`]'s copy at `index`; the caller saves the
    /// snapshot. `None` if a snapshot at or past `index` was installed from
    /// the leader meanwhile: the encoding is stale and is dropped (the
    /// install re-armed the core's request).
    pub fn finish_snapshot(&mut self, index: u64, data: Bytes, now: Instant) -> Option<Snapshot> {
        let installed = self.raft.status(now).snapshot_index.0;
        if index <= installed.max(self.snapshot_index) {
            return None;
        }
        self.snapshot_bytes = data.len() as u64;
        let snap = self.raft.compact(LogIndex(index), data);
        self.snapshot_index = index;
        Some(snap)
    }
}

/// What an applied entry adds to `Replica::log_bytes`.
fn entry_bytes(entry: &Entry) -> u64 {
    let payload = match &entry.payload {
        Payload::Command(bytes) => bytes.len() as u64,
        Payload::Noop | Payload::Config { .. } => 0,
    };
    payload + ENTRY_OVERHEAD_BYTES
}

/// The command of a state check entry.
fn state_check() -> pb::Command {
    pb::Command {
        op: Some(pb::command::Op::StateCheck(pb::StateCheckCmd {})),
    }
}

fn replaced(index: u64) -> Refusal {
    Refusal::OutcomeUnknown(format!(
        "entry {index} was replaced after a leader change; retry with the same session"
    ))
}
