//! The node loop: one task owns the consensus core, the state machine and the
//! storage, and is the only place they change.
//!
//! Each turn: wait for an input or the next tick, drain every queued input
//! (a batch, so many proposals share one fsync), then take the core's `Ready`
//! and carry it out in the order Raft requires: persist (one sync, on a
//! blocking thread), send, restore a snapshot, apply, answer reads, snapshot.

use super::config::Config;
use super::node::{Input, MemberAddrs, NodeError, ReadAnswer, ReadKind, Reply};
use super::transport::Transport;
use crate::kv::{Limits, StateMachine};
use crate::observe::Metrics;
use crate::pb;
use crate::raft::{self, LogIndex, NodeId, Payload, ProposeError, Raft, Ready, Role};
use crate::storage::Storage;
use prost::Message as _;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// Longest wait for a leadership transfer's outcome; the core itself gives
/// up after an election timeout, so this only bounds a lost decision.
const TRANSFER_LIMIT: Duration = Duration::from_secs(5);

/// A client proposal waiting for its entry to be applied.
pub(super) struct Pending<T> {
    term: raft::Term,
    reply: Reply<T>,
}

/// Everything the loop owns.
pub struct Driver {
    pub(super) id: NodeId,
    pub(super) cluster_id: String,
    pub(super) raft: Raft,
    pub(super) sm: StateMachine,
    pub(super) limits: Limits,
    /// Taken while a blocking thread writes; always back before the next turn.
    pub(super) storage: Option<Storage>,
    pub(super) transport: Transport,
    pub(super) metrics: Metrics,
    pub(super) clock: std::time::Instant,
    /// Client addresses of the members, for not-leader redirects.
    pub(super) client_addrs: BTreeMap<u64, String>,
    pub(super) peer_addrs: BTreeMap<u64, String>,
    // Invariant: applied <= the core's commit index.
    pub(super) applied: u64,
    pub(super) snapshot_index: u64,
    pub(super) writes: BTreeMap<u64, Pending<pb::WriteResponse>>,
    pub(super) changes: BTreeMap<u64, Pending<u64>>,
    pub(super) reads: HashMap<u64, (ReadKind, Reply<ReadAnswer>)>,
    /// Reads the core released at an index not applied yet: (index, id).
    pub(super) waiting_reads: Vec<(u64, u64)>,
    pub(super) next_read: u64,
    pub(super) last_leader: Option<NodeId>,
    pub(super) last_role: Role,
    pub(super) stopping: Option<(std::time::Instant, oneshot::Sender<()>)>,
    /// A leadership transfer under way: (to, give up at, the caller).
    transfer: Option<(NodeId, std::time::Instant, Reply<u64>)>,
    pub(super) last_leader_gauges: bool,
}

/// What `run` needs besides the core.
pub struct Parts {
    pub config: Config,
    pub cluster_id: String,
    pub raft: Raft,
    pub sm: StateMachine,
    pub applied: u64,
    pub storage: Storage,
    pub transport: Transport,
    pub metrics: Metrics,
    pub clock: std::time::Instant,
}

impl Driver {
    pub fn new(p: Parts) -> Driver {
        let limits = Limits {
            max_key_bytes: p.config.max_key_bytes,
            max_value_bytes: p.config.max_value_bytes,
        };
        let mut client_addrs: BTreeMap<u64, String> = p
            .config
            .peers
            .iter()
            .map(|x| (x.id, x.client_addr.clone()))
            .collect();
        client_addrs.insert(p.config.id, p.config.advertise_client_addr.clone());
        let peer_addrs = p
            .config
            .peers
            .iter()
            .map(|x| (x.id, x.peer_addr.clone()))
            .collect();
        let role = p.raft.role();
        let mut driver = Driver {
            id: NodeId(p.config.id),
            cluster_id: p.cluster_id,
            raft: p.raft,
            sm: p.sm,
            limits,
            storage: Some(p.storage),
            transport: p.transport,
            metrics: p.metrics,
            clock: p.clock,
            client_addrs,
            peer_addrs,
            applied: p.applied,
            snapshot_index: p.applied,
            writes: BTreeMap::new(),
            changes: BTreeMap::new(),
            reads: HashMap::new(),
            waiting_reads: Vec::new(),
            next_read: 1,
            last_leader: None,
            last_role: role,
            last_leader_gauges: false,
            stopping: None,
            transfer: None,
        };
        driver.learn_replicated_addresses();
        driver
    }

    pub(super) fn now(&self) -> raft::Instant {
        raft::Instant(self.clock.elapsed())
    }

    /// Runs until shutdown or a storage failure (after which the node must
    /// restart and recover from disk rather than carry on).
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Input>,
        tick: Duration,
    ) -> Result<(), String> {
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let ticked = tokio::select! {
                input = rx.recv() => match input {
                    Some(input) => {
                        self.handle(input);
                        false
                    }
                    None => return Ok(()),
                },
                _ = ticker.tick() => {
                    let now = self.now();
                    self.raft.tick(now);
                    true
                }
            };
            while let Ok(input) = rx.try_recv() {
                self.handle(input);
            }
            let ready = self.raft.ready();
            self.process(ready).await?;
            self.observe(ticked);
            if self.stop_due() {
                if let Some((_, done)) = self.stopping.take() {
                    self.fail_all_pending();
                    let _ = done.send(());
                }
                return Ok(());
            }
        }
    }

    fn handle(&mut self, input: Input) {
        let now = self.now();
        match input {
            Input::Peer(m) => self.raft.step(m, now),
            Input::Write(req, reply) => self.propose_write(req, reply),
            Input::Read(kind, reply) => self.start_read(kind, reply),
            Input::Change(change, addrs, reply) => {
                if self.stopping.is_some() {
                    let _ = reply.send(Err(NodeError::Stopped));
                    return;
                }
                // Only the leader uses the addresses: everyone else learns
                // them from the log (a follower just redirects the request).
                if let (raft::ConfChange::AddLearner(id), Some(a), Role::Leader) =
                    (change, addrs, self.raft.role())
                {
                    self.propose_addresses(id, &a, now);
                    self.learn_addresses(id, a);
                }
                match self.raft.propose_conf_change(change, now) {
                    Ok(id) => {
                        self.changes.insert(
                            id.index.0,
                            Pending {
                                term: id.term,
                                reply,
                            },
                        );
                    }
                    Err(e) => {
                        let _ = reply.send(Err(self.propose_error(e)));
                    }
                }
            }
            Input::Transfer(to, reply) => {
                let started = match to.or_else(|| self.best_successor()) {
                    None => Err(NodeError::Busy("no voter to transfer leadership to".into())),
                    Some(to) => self
                        .raft
                        .transfer_leadership(to, now)
                        .map(|()| to)
                        .map_err(|e| self.propose_error(e)),
                };
                match started {
                    // Answered once `to` leads, or the transfer fails.
                    Ok(to) => {
                        let deadline = std::time::Instant::now() + TRANSFER_LIMIT;
                        if let Some(old) = self.transfer.replace((to, deadline, reply)) {
                            let why = format!("superseded by a transfer to node {to}");
                            let _ = old.2.send(Err(NodeError::Busy(why)));
                        }
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Input::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Input::Members(reply) => {
                let _ = reply.send(self.members());
            }
            Input::Ready(reply) => {
                let _ = reply.send(self.readiness());
            }
            Input::Ping(reply) => {
                let _ = reply.send(());
            }
            Input::Shutdown(grace, reply) => {
                tracing::info!(grace_ms = grace.as_millis() as u64, "shutting down");
                if self.raft.role() == Role::Leader {
                    if let Some(to) = self.best_successor() {
                        tracing::info!(to = %to, "transferring leadership before shutdown");
                        if let Err(e) = self.raft.transfer_leadership(to, now) {
                            tracing::warn!(error = ?e, "leadership transfer failed");
                        }
                    }
                }
                self.stopping = Some((std::time::Instant::now() + grace, reply));
            }
        }
    }

    /// Replicates the addresses of a member about to be added, in the log
    /// before its membership change, so every node (and so every future
    /// leader) can reach it. If this fails, the change itself fails next.
    fn propose_addresses(&mut self, id: NodeId, a: &MemberAddrs, now: raft::Instant) {
        let command = pb::Command {
            op: Some(pb::command::Op::MemberAddrs(pb::MemberAddrsCmd {
                id: id.0,
                peer_addr: a.peer.clone(),
                client_addr: a.client.clone(),
            })),
        };
        let proposal = pb::Proposal {
            session: None,
            stamp_ms: wall_ms(),
            command: Some(command),
        };
        if let Err(e) = self.raft.propose(proposal.encode_to_vec().into(), now) {
            tracing::warn!(id = id.0, error = ?e, "could not replicate a new member's addresses");
        }
    }

    /// Uses the member addresses that arrived through the log (or a
    /// snapshot). Called only when they may have changed: at start, after a
    /// restore, after a `MemberAddrs` entry; `learn_addresses` is idempotent.
    fn learn_replicated_addresses(&mut self) {
        let members: Vec<(NodeId, MemberAddrs)> = self
            .sm
            .members()
            .values()
            .map(|m| {
                let a = MemberAddrs {
                    peer: m.peer_addr.clone(),
                    client: m.client_addr.clone(),
                };
                (NodeId(m.id), a)
            })
            .collect();
        for (id, a) in members {
            self.learn_addresses(id, a);
        }
    }

    /// Addresses of a node added at run time, proposed by this node or
    /// replicated through the log.
    fn learn_addresses(&mut self, id: NodeId, a: MemberAddrs) {
        if !a.peer.is_empty() {
            self.peer_addrs.insert(id.0, a.peer.clone());
            if id != self.id {
                self.transport.add_peer(&self.cluster_id, id, a.peer);
            }
        }
        if !a.client.is_empty() {
            self.client_addrs.insert(id.0, a.client);
        }
    }

    fn stop_due(&self) -> bool {
        match &self.stopping {
            Some((deadline, _)) => {
                self.raft.role() != Role::Leader || std::time::Instant::now() >= *deadline
            }
            None => false,
        }
    }

    fn propose_write(&mut self, req: pb::WriteRequest, reply: Reply<pb::WriteResponse>) {
        if self.stopping.is_some() {
            let _ = reply.send(Err(NodeError::Stopped));
            return;
        }
        if self.raft.role() != Role::Leader {
            let _ = reply.send(Err(self.not_leader()));
            return;
        }
        let Some(command) = req.command else {
            let _ = reply.send(Err(NodeError::InvalidArgument(
                "write without a command".into(),
            )));
            return;
        };
        if let Err(e) = self.sm.validate(&command) {
            self.metrics.proposals_failed.inc();
            let _ = reply.send(Ok(pb::WriteResponse {
                result: Some(pb::write_response::Result::Error(e)),
                index: 0,
            }));
            return;
        }
        let proposal = pb::Proposal {
            session: req.session,
            stamp_ms: wall_ms(),
            command: Some(command),
        };
        match self
            .raft
            .propose(proposal.encode_to_vec().into(), self.now())
        {
            Ok(id) => {
                self.writes.insert(
                    id.index.0,
                    Pending {
                        term: id.term,
                        reply,
                    },
                );
            }
            Err(e) => {
                self.metrics.proposals_failed.inc();
                let _ = reply.send(Err(self.propose_error(e)));
            }
        }
    }

    fn start_read(&mut self, kind: ReadKind, reply: Reply<ReadAnswer>) {
        if self.stopping.is_some() {
            let _ = reply.send(Err(NodeError::Stopped));
            return;
        }
        let id = self.next_read;
        self.next_read += 1;
        match self.raft.read(id, self.now()) {
            Ok(()) => {
                self.reads.insert(id, (kind, reply));
            }
            Err(e) => {
                let _ = reply.send(Err(self.propose_error(e)));
            }
        }
    }

    fn propose_error(&self, e: ProposeError) -> NodeError {
        match e {
            ProposeError::NotLeader { .. } => self.not_leader(),
            ProposeError::Busy(s) => NodeError::Busy(s),
            ProposeError::Invalid(s) => NodeError::InvalidArgument(s),
        }
    }

    fn not_leader(&self) -> NodeError {
        let leader = self
            .raft
            .leader()
            .filter(|l| *l != self.id || self.raft.role() == Role::Leader);
        NodeError::NotLeader {
            leader: leader.and_then(|l| self.client_addrs.get(&l.0).map(|a| (l.0, a.clone()))),
        }
    }

    /// Carries out one `Ready` in the order Raft requires.
    async fn process(&mut self, ready: Ready) -> Result<(), String> {
        let Ready {
            hard_state,
            must_sync,
            entries,
            snapshot,
            messages,
            committed,
            reads,
            failed_reads,
            snapshot_due,
            events,
        } = ready;
        for e in &events {
            self.record_event(e);
        }
        let aborted = events
            .iter()
            .any(|e| matches!(e, raft::Event::TransferAborted { .. }));
        self.settle_transfer(aborted);
        if must_sync {
            self.persist(hard_state, entries, snapshot.clone()).await?;
        } else if let Some(hs) = hard_state {
            self.write_commit(hs)?;
        }
        self.transport.send(messages);
        if let Some(snap) = snapshot {
            self.restore(&snap)?;
        }
        for entry in committed {
            self.apply(entry);
        }
        for r in reads {
            self.waiting_reads.push((r.index.0, r.id));
        }
        self.answer_reads();
        for id in failed_reads {
            if let Some((_, reply)) = self.reads.remove(&id) {
                let _ = reply.send(Err(self.not_leader()));
            }
        }
        if self.raft.role() != Role::Leader && self.last_role == Role::Leader {
            self.lost_leadership();
        }
        self.last_role = self.raft.role();
        if snapshot_due {
            self.take_snapshot().await?;
        }
        Ok(())
    }

    /// Buffers a hard state whose only change is the commit index, without
    /// an fsync (see `Ready::must_sync`); the next sync makes it durable. A
    /// buffered write costs no disk I/O, so it runs on the loop.
    fn write_commit(&mut self, hs: raft::HardState) -> Result<(), String> {
        let storage = self
            .storage
            .as_mut()
            .ok_or("storage lost after an earlier failure")?;
        storage
            .set_hard_state(hs)
            .map_err(|e| format!("storage: {e}"))
    }

    /// Writes what the core asks to persist with one sync, on a blocking
    /// thread so the runtime keeps serving while the disk works.
    async fn persist(
        &mut self,
        hs: Option<raft::HardState>,
        entries: Vec<raft::Entry>,
        snapshot: Option<raft::Snapshot>,
    ) -> Result<(), String> {
        let mut storage = self
            .storage
            .take()
            .ok_or("storage lost after an earlier failure")?;
        let (storage, result) = tokio::task::spawn_blocking(move || {
            let start = std::time::Instant::now();
            let r = (|| {
                if let Some(s) = &snapshot {
                    storage.install_snapshot(s)?;
                }
                if !entries.is_empty() {
                    storage.append(&entries)?;
                }
                if let Some(hs) = hs {
                    storage.set_hard_state(hs)?;
                }
                storage.sync()
            })();
            (storage, r.map(|()| start.elapsed()))
        })
        .await
        .map_err(|e| format!("storage thread failed: {e}"))?;
        self.storage = Some(storage);
        let took = result.map_err(|e| format!("storage: {e}"))?;
        self.metrics.wal_fsync_duration.observe(took.as_secs_f64());
        Ok(())
    }

    fn restore(&mut self, snap: &raft::Snapshot) -> Result<(), String> {
        self.sm = StateMachine::restore(self.limits, &snap.data).map_err(|e| {
            format!(
                "snapshot at index {} does not restore: {e:?}",
                snap.meta.last.index
            )
        })?;
        self.applied = snap.meta.last.index.0;
        self.snapshot_index = self.applied;
        self.learn_replicated_addresses();
        self.metrics.snapshots.inc();
        self.metrics.snapshot_last_index.set(self.applied as i64);
        tracing::info!(index = self.applied, term = %snap.meta.last.term, "installed snapshot from leader");
        // Proposals the snapshot covers may or may not be in it.
        let covered: Vec<u64> = self
            .writes
            .range(..=self.applied)
            .map(|(i, _)| *i)
            .collect();
        for i in covered {
            if let Some(p) = self.writes.remove(&i) {
                let _ = p.reply.send(Err(NodeError::OutcomeUnknown(
                    "replaced by a snapshot".into(),
                )));
            }
        }
        Ok(())
    }

    fn apply(&mut self, entry: raft::Entry) {
        let index = entry.index().0;
        if index <= self.applied {
            return;
        }
        debug_assert_eq!(
            index,
            self.applied + 1,
            "committed entries are applied in order"
        );
        self.applied = index;
        match &entry.payload {
            Payload::Command(bytes) => {
                let response = self.sm.apply(index, bytes);
                if let Some(pb::write_response::Result::MemberAddrs(_)) = response.result {
                    self.learn_replicated_addresses();
                }
                if let Some(p) = self.writes.remove(&index) {
                    if p.term == entry.term() {
                        self.metrics.proposals_committed.inc();
                        let _ = p.reply.send(Ok(response));
                    } else {
                        self.unknown(p, index);
                    }
                }
            }
            Payload::Noop => {
                if let Some(p) = self.writes.remove(&index) {
                    self.unknown(p, index);
                }
            }
            Payload::Config(m) => {
                tracing::info!(index, voters = ?m.voters, learners = ?m.learners, "membership committed");
                if let Some(p) = self.changes.remove(&index) {
                    let r = if p.term == entry.term() {
                        Ok(index)
                    } else {
                        Err(NodeError::OutcomeUnknown(format!(
                            "entry {index} holds another term's entry"
                        )))
                    };
                    let _ = p.reply.send(r);
                }
            }
        }
    }

    fn unknown(&self, p: Pending<pb::WriteResponse>, index: u64) {
        self.metrics.proposals_failed.inc();
        let msg = format!(
            "entry {index} was replaced after a leader change; retry with the same session"
        );
        let _ = p.reply.send(Err(NodeError::OutcomeUnknown(msg)));
    }

    /// Proposals in flight when leadership is lost may still commit under the
    /// next leader, or not: their outcome is unknown.
    /// Answers the caller of a leadership transfer once it is decided: `to`
    /// leads (ok), the core gave it up, another node took over, or it ran
    /// past `TRANSFER_LIMIT`.
    fn settle_transfer(&mut self, aborted: bool) {
        let Some((to, deadline, _)) = &self.transfer else {
            return;
        };
        let to = *to;
        let outcome = match self.raft.leader() {
            Some(l) if l == to => Ok(to.0),
            _ if aborted => Err(format!(
                "node {to} did not take over within the election timeout"
            )),
            Some(l) if l != self.id => Err(format!("node {l} took over instead of node {to}")),
            _ if std::time::Instant::now() > *deadline => {
                Err(format!("node {to} did not take over in {TRANSFER_LIMIT:?}"))
            }
            _ => return,
        };
        if let Some((_, _, reply)) = self.transfer.take() {
            let _ = reply.send(
                outcome
                    .map_err(|why| NodeError::Busy(format!("leadership transfer failed: {why}"))),
            );
        }
    }

    fn lost_leadership(&mut self) {
        let n = self.writes.len() + self.changes.len();
        if n > 0 {
            tracing::info!(pending = n, "leadership lost with proposals in flight");
        }
        self.fail_all_pending();
    }

    fn fail_all_pending(&mut self) {
        for (_, p) in std::mem::take(&mut self.writes) {
            self.metrics.proposals_failed.inc();
            let _ = p.reply.send(Err(NodeError::OutcomeUnknown(
                "leadership lost before the write committed".into(),
            )));
        }
        for (_, p) in std::mem::take(&mut self.changes) {
            let _ = p.reply.send(Err(NodeError::OutcomeUnknown(
                "leadership lost before the change committed".into(),
            )));
        }
        let not_leader = self.not_leader();
        for (_, (_, reply)) in self.reads.drain() {
            let _ = reply.send(Err(not_leader.clone()));
        }
        self.waiting_reads.clear();
    }

    fn answer_reads(&mut self) {
        let applied = self.applied;
        let now_ms = wall_ms();
        let mut still = Vec::new();
        for (index, id) in std::mem::take(&mut self.waiting_reads) {
            if index > applied {
                still.push((index, id));
                continue;
            }
            if let Some((kind, reply)) = self.reads.remove(&id) {
                let answer = match kind {
                    ReadKind::Get(key) => ReadAnswer::Get(self.sm.get(&key, now_ms)),
                    ReadKind::Ttl(key) => ReadAnswer::Ttl(self.sm.ttl(&key, now_ms)),
                };
                let _ = reply.send(Ok(answer));
            }
        }
        self.waiting_reads = still;
    }

    /// Snapshots the state machine at `applied`, compacts the log and saves
    /// the snapshot on a blocking thread.
    async fn take_snapshot(&mut self) -> Result<(), String> {
        let start = std::time::Instant::now();
        let data = self.sm.snapshot();
        let snap = self.raft.compact(LogIndex(self.applied), data);
        let mut storage = self
            .storage
            .take()
            .ok_or("storage lost after an earlier failure")?;
        let (storage, r) = tokio::task::spawn_blocking(move || {
            let r = storage.save_snapshot(&snap);
            (storage, r)
        })
        .await
        .map_err(|e| format!("storage thread failed: {e}"))?;
        self.storage = Some(storage);
        r.map_err(|e| format!("storage: saving a snapshot: {e}"))?;
        self.snapshot_index = self.applied;
        self.metrics.snapshots.inc();
        self.metrics.snapshot_last_index.set(self.applied as i64);
        self.metrics
            .snapshot_duration
            .observe(start.elapsed().as_secs_f64());
        tracing::info!(
            index = self.applied,
            keys = self.sm.len(),
            took_ms = start.elapsed().as_millis() as u64,
            "snapshot taken"
        );
        Ok(())
    }
}

/// Milliseconds since the Unix epoch (the leader's stamp for expiry).
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
