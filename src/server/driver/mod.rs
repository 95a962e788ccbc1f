//! The node loop: one task owns the consensus core, the state machine and the
//! storage, and is the only place they change.
//!
//! Each turn: wait for an input or the next tick, then take a bounded batch
//! — every queued peer message first (their own queue, see `node::Inbox`),
//! then at most `CLIENT_BATCH` client inputs, so many proposals share one
//! fsync but a heartbeat acknowledgement never waits behind thousands of
//! them — then take the core's `Ready` and carry it out in the order Raft
//! requires: persist (one sync, on a blocking thread), send, then let the
//! replica restore, apply and answer (`crate::replica`, shared with the
//! simulator), deliver its answers, and start a snapshot when one is due.
//! This file is the I/O shell: what is decided, and in which order clients
//! are answered, is the replica's.
//!
//! The loop never sits idle on the disk or on a big state:
//! - While a `Ready`'s sync runs, it keeps stepping peer messages, ticks and
//!   client inputs into the core (etcd-raft allows `Step` between `Ready`
//!   and `Advance`), so lease acknowledgements and heartbeats are processed
//!   on time. It calls `ready()` again only once the sync is done, so every
//!   output of those steps (messages, commits, released reads) leaves after
//!   the sync, exactly as if they had arrived just after it: a follower's
//!   append acknowledgement still follows its fsync, and the leader's own
//!   entries still count only once they are durable (see docs/node.md).
//!   The one exception is heartbeats and their answers
//!   (`Raft::take_heartbeats`), which depend on nothing being written and
//!   leave at once, so a slow fsync on any node does not cost the lease.
//!   Once the sync is done, the loop takes the next `Ready` at once if it
//!   stepped anything meanwhile, rather than at the next wake-up.
//! - A snapshot is built in three stages, one at a time: the state machine
//!   is copied on the loop (the only part that is, measured in
//!   docs/performance.md), encoded on a blocking thread, and its file is
//!   written and fsynced on another, beside the WAL; the loop then compacts
//!   the core's log and, on the storage thread, deletes what it replaces.

mod view;

use super::auth::AuthPublisher;
use super::boot_clock::BootClock;
use super::config::Config;
use super::node::{ChangeRequest, Inbox, Input, MemberAddrs, NodeError, ReadAnswer, Reply};
use super::transport::Transport;
use crate::kv::StateMachine;
use crate::observe::Metrics;
use crate::pb;
use crate::raft::{self, NodeId, Raft, Ready, Role};
use crate::replica::state_check::Comparison;
use crate::replica::{Applied, Callers, Effect, Refusal, Replica, SnapshotPolicy, StopHandoff};
use crate::storage::{self, Storage};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Client inputs taken in one turn (one `Ready`, one fsync). Large enough
/// for group commit under a 64-client flood, small enough that a turn stays
/// short (one input costs microseconds).
const CLIENT_BATCH: usize = 1024;

/// Peer messages stepped in one go before the loop looks at anything else.
const PEER_BATCH: usize = 1024;

/// What woke the loop.
enum Wake {
    Peer(raft::Message, std::time::Instant),
    /// The transport's connection to this peer broke.
    ConnectionLost(NodeId),
    Input(Input),
    Tick,
    Snapshot(Result<Background, oneshot::error::RecvError>),
    /// This node's state hash at a state check: (index, hash).
    Hashed(u64, u64),
    /// Every handle to the node is gone.
    Closed,
}

/// A snapshot stage finished on a blocking thread.
enum Background {
    /// The copy of the state machine at `index` is encoded.
    Encoded {
        index: u64,
        data: Bytes,
        times: SnapshotTimes,
    },
    /// The snapshot file is durable at `path`.
    Written {
        index: u64,
        path: Result<PathBuf, storage::StorageError>,
        times: SnapshotTimes,
    },
}

/// Where a local snapshot's time went, for its metrics and log line.
#[derive(Clone, Copy)]
struct SnapshotTimes {
    started: std::time::Instant,
    /// Copying the state machine, on the loop.
    copy: Duration,
    /// Encoding the copy, on the snapshot thread.
    encode: Duration,
}

/// Runs a snapshot stage (or a state hash) on a thread of its own at a
/// lower CPU priority (nice 10, Linux): on a busy machine the node loops,
/// whose turns renew the lease, come first; a snapshot only has to be done
/// before the log grows much further. (Not on tokio's blocking pool: its
/// threads also sync the WAL and would keep the lower priority.)
pub(super) fn in_background<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> oneshot::Receiver<T> {
    let (tx, rx) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            #[cfg(target_os = "linux")]
            // SAFETY: setpriority has no memory effects; with `who` = 0 it
            // changes the calling thread's nice value only (on Linux).
            unsafe {
                libc::setpriority(libc::PRIO_PROCESS, 0, 10);
            }
            let _ = tx.send(f());
        });
    if let Err(e) = spawned {
        // The receiver reports the failure (its sender was dropped).
        tracing::error!(error = %e, thread = name, "could not start a background thread");
    }
    rx
}

/// The loop's sources of work, apart from the driver's own state.
struct Io {
    inbox: Inbox,
    /// Peers whose connection broke (`Transport::take_losses`).
    losses: mpsc::UnboundedReceiver<NodeId>,
    ticker: tokio::time::Interval,
    /// The snapshot stage under way, if any (at most one).
    job: Option<oneshot::Receiver<Background>>,
    /// State hashes computed off the loop (see `Driver::hash_state`).
    hashed: mpsc::UnboundedReceiver<(u64, u64)>,
    closed: bool,
    /// Something was stepped while a sync ran: its output waits in the core
    /// for the next `Ready`, which the loop then takes without waiting.
    stepped: bool,
    /// A tick was stepped since the gauges were last refreshed (under load
    /// most ticks are stepped during a sync, not as the loop's wake-up).
    ticked: bool,
}

impl Io {
    /// Waits for the next thing to do: peers first, then time, the
    /// snapshot job (if `jobs`), and client inputs last.
    async fn next(&mut self, jobs: bool) -> Wake {
        let Io {
            inbox,
            losses,
            ticker,
            job,
            hashed,
            closed,
            ..
        } = self;
        let job = async {
            match job.as_mut() {
                Some(j) if jobs => j.await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            m = inbox.peers.recv() => match m {
                Some((at, m)) => Wake::Peer(m, at),
                None => Wake::Closed,
            },
            Some(peer) = losses.recv() => Wake::ConnectionLost(peer),
            _ = ticker.tick() => Wake::Tick,
            r = job => Wake::Snapshot(r),
            Some((index, hash)) = hashed.recv() => Wake::Hashed(index, hash),
            input = inbox.inputs.recv(), if !*closed => match input {
                Some(input) => Wake::Input(input),
                None => Wake::Closed,
            },
        }
    }
}

/// The node's callers: oneshot senders that gRPC handlers wait on.
pub(super) struct Waiters;

impl Callers for Waiters {
    type Write = Reply<pb::WriteResponse>;
    type Change = Reply<pb::ChangeResponse>;
    type Read = Reply<ReadAnswer>;
    type Transfer = Reply<u64>;
}

/// Everything the loop owns: the replica (core, state machine, waiting
/// requests) and the I/O around it.
pub struct Driver {
    id: NodeId,
    cluster_id: String,
    replica: Replica<Waiters>,
    /// Taken while a blocking thread writes; always back before the next turn.
    storage: Option<Storage>,
    transport: Transport,
    metrics: Metrics,
    /// The core's clock (boot time: it keeps counting through a suspend).
    clock: BootClock,
    /// Client addresses of the members, for not-leader redirects.
    client_addrs: BTreeMap<u64, String>,
    peer_addrs: BTreeMap<u64, String>,
    last_leader: Option<NodeId>,
    /// Who waits for the node to stop (set with `Replica::stop`).
    stopped: Option<oneshot::Sender<()>>,
    last_leader_gauges: bool,
    /// A snapshot file written and waiting to be adopted by the storage.
    pending_adoption: Option<Adoption>,
    /// Where state hashes computed off the loop come back, and the loop's
    /// end of it (taken by `run`).
    hashes: mpsc::UnboundedSender<(u64, u64)>,
    hashed: Option<mpsc::UnboundedReceiver<(u64, u64)>>,
    auth: AuthPublisher,
}

/// A written snapshot file: (index, path, where its time went).
type Adoption = (u64, PathBuf, SnapshotTimes);

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
    pub clock: BootClock,
    /// When to snapshot, and the size of the snapshot restored at start.
    pub snapshot_policy: SnapshotPolicy,
    pub restored_bytes: u64,
    /// Where the applied auth store goes for the client port's checks.
    pub auth: AuthPublisher,
}

impl Driver {
    pub fn new(p: Parts) -> Driver {
        let limits = super::startup::limits(&p.config);
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
        let (hashes, hashed) = mpsc::unbounded_channel();
        let mut driver = Driver {
            id: NodeId(p.config.id),
            cluster_id: p.cluster_id,
            replica: Replica::new(p.raft, p.sm, p.applied, limits, p.clock.now()),
            storage: Some(p.storage),
            transport: p.transport,
            metrics: p.metrics,
            clock: p.clock,
            client_addrs,
            peer_addrs,
            last_leader: None,
            last_leader_gauges: false,
            stopped: None,
            pending_adoption: None,
            hashes,
            hashed: Some(hashed),
            auth: p.auth,
        };
        driver
            .replica
            .set_state_check_interval(p.config.state_check_interval);
        driver
            .replica
            .set_snapshot_policy(p.snapshot_policy, p.restored_bytes);
        driver.learn_replicated_addresses();
        driver
    }

    fn now(&self) -> raft::Instant {
        self.clock.now()
    }

    fn raft(&self) -> &Raft {
        self.replica.raft()
    }

    /// Runs until shutdown or a storage failure (after which the node must
    /// restart and recover from disk rather than carry on).
    pub async fn run(mut self, inbox: Inbox, tick: Duration) -> Result<(), String> {
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (_, spare) = mpsc::unbounded_channel();
        let (_, no_losses) = mpsc::unbounded_channel();
        let mut io = Io {
            inbox,
            losses: self.transport.take_losses().unwrap_or(no_losses),
            ticker,
            job: None,
            hashed: self.hashed.take().unwrap_or(spare),
            closed: false,
            stepped: false,
            ticked: false,
        };
        loop {
            let wake = if std::mem::take(&mut io.stepped) {
                None
            } else {
                Some(io.next(true).await)
            };
            let busy = std::time::Instant::now();
            if let Some(wake) = wake {
                self.on_wake(wake, &mut io)?;
            }
            if io.closed {
                return Ok(());
            }
            self.take_batch(&mut io);
            let ready = self.replica.ready();
            self.process(ready, &mut io).await?;
            self.observe(std::mem::take(&mut io.ticked));
            self.metrics.loop_busy.observe(busy.elapsed().as_secs_f64());
            if self.replica.stop_due(self.now()) {
                self.replica.fail_all("the node stopped");
                self.deliver();
                if let Some(done) = self.stopped.take() {
                    let _ = done.send(());
                }
                return Ok(());
            }
        }
    }

    /// Feeds one wake-up into the core (or the snapshot pipeline).
    fn on_wake(&mut self, wake: Wake, io: &mut Io) -> Result<(), String> {
        match wake {
            Wake::Peer(m, at) => self.step_peer(m, at),
            Wake::ConnectionLost(peer) => {
                let now = self.now();
                self.replica.connection_lost(peer, now);
            }
            Wake::Input(input) => self.handle(input),
            Wake::Tick => {
                let now = self.now();
                self.replica.tick(now);
                // Look at the lease at every tick, wherever it is stepped:
                // the held-seconds counter only counts what it sees between
                // two looks, and a sync can take a while.
                self.metrics.note_lease(self.raft().lease_remaining(now));
                io.ticked = true;
            }
            Wake::Snapshot(r) => {
                io.job = None;
                let done = r.map_err(|_| "snapshot thread failed".to_string())?;
                self.snapshot_stage_done(done, io)?;
            }
            Wake::Hashed(index, hash) => {
                self.metrics.state_hash_last_index.set(index as i64);
                tracing::info!(
                    index,
                    hash = format!("{hash:016x}"),
                    "state hashed at a state check"
                );
                self.replica.state_hashed(index, hash, self.now());
                self.deliver();
            }
            Wake::Closed => io.closed = true,
        }
        Ok(())
    }

    fn step_peer(&mut self, m: raft::Message, queued_at: std::time::Instant) {
        self.metrics
            .peer_queue_wait
            .observe(queued_at.elapsed().as_secs_f64());
        self.metrics.peer_round_trips.received(&m, queued_at);
        let now = self.now();
        self.replica.step(m, now);
    }

    /// Takes what is queued, in bounded amounts: peer messages first, then
    /// client inputs.
    fn take_batch(&mut self, io: &mut Io) {
        for _ in 0..PEER_BATCH {
            match io.inbox.peers.try_recv() {
                Ok((at, m)) => self.step_peer(m, at),
                Err(_) => break,
            }
        }
        for _ in 0..CLIENT_BATCH {
            match io.inbox.inputs.try_recv() {
                Ok(input) => self.handle(input),
                Err(_) => break,
            }
        }
    }

    fn handle(&mut self, input: Input) {
        let now = self.now();
        match input {
            Input::Write(req, user, reply) => self.replica.propose_write_as(req, user, reply, now),
            Input::Read(kind, reply) => self.replica.read(kind, reply, now),
            Input::Change(request, reply) => {
                let ChangeRequest {
                    change,
                    addrs,
                    context,
                } = request;
                // Only the leader uses the addresses: everyone else learns
                // them from the log (a follower just redirects the request).
                if let (raft::ConfChange::AddLearner(id), Some(a), Role::Leader) =
                    (change, addrs, self.raft().role())
                {
                    let cmd = pb::MemberAddrsCmd {
                        id: id.0,
                        peer_addr: a.peer.clone(),
                        client_addr: a.client.clone(),
                    };
                    if let Err(e) = self.replica.propose_addresses(cmd, now) {
                        tracing::warn!(id = id.0, error = ?e, "could not replicate a new member's addresses");
                    }
                    self.learn_addresses(id, a);
                }
                self.replica.propose_change(change, context, reply, now);
            }
            Input::Transfer(to, reply) => self.replica.transfer_leadership(to, reply, now),
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
                match self.replica.stop(grace, now) {
                    StopHandoff::TransferTo(to) => {
                        tracing::info!(to = %to, "transferring leadership before shutdown");
                    }
                    StopHandoff::Refused(to, e) => {
                        tracing::warn!(to = %to, error = ?e, "leadership transfer before shutdown failed");
                    }
                    StopHandoff::AlreadyStopping
                    | StopHandoff::NotLeader
                    | StopHandoff::NoSuccessor => {}
                }
                self.stopped = Some(reply);
            }
        }
        self.deliver();
    }

    /// Uses the member addresses that arrived through the log (or a
    /// snapshot). Called only when they may have changed: at start, after a
    /// restore, after a `MemberAddrs` entry; `learn_addresses` is idempotent.
    fn learn_replicated_addresses(&mut self) {
        let members: Vec<(NodeId, MemberAddrs)> = self
            .replica
            .state_machine()
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

    /// The error a client sees for a refusal: a not-leader answer names the
    /// leader's client address.
    fn node_error(&self, r: Refusal) -> NodeError {
        match r {
            Refusal::NotLeader(leader) => NodeError::NotLeader {
                leader: leader.and_then(|l| self.client_addrs.get(&l.0).map(|a| (l.0, a.clone()))),
            },
            Refusal::OutcomeUnknown(s) => NodeError::OutcomeUnknown(s),
            Refusal::Invalid(s) => NodeError::InvalidArgument(s),
            Refusal::Busy(s) => NodeError::Busy(s),
            Refusal::Rejected(e) => NodeError::InvalidArgument(e.message),
            Refusal::Stopping => NodeError::Stopped,
            Refusal::LearnerBehind(id) => NodeError::LearnerBehind(id.0),
        }
    }

    /// Carries out the replica's decisions: answers to waiting callers,
    /// member addresses to learn.
    fn deliver(&mut self) {
        self.auth.publish(self.replica.state_machine());
        for effect in self.replica.take_effects() {
            match effect {
                Effect::Written { caller, result, .. } => {
                    let answer = match result {
                        Ok(response) => {
                            self.metrics.proposals_committed.inc();
                            Ok(response)
                        }
                        // Refused before proposing: the client gets the
                        // state machine's error as its answer.
                        Err(Refusal::Rejected(e)) => {
                            self.metrics.proposals_failed.inc();
                            Ok(pb::WriteResponse {
                                result: Some(pb::write_response::Result::Error(e)),
                                index: 0,
                            })
                        }
                        // A redirect or a malformed request is not a
                        // failed proposal.
                        Err(r @ (Refusal::NotLeader(_) | Refusal::Invalid(_))) => {
                            Err(self.node_error(r))
                        }
                        Err(r) => {
                            self.metrics.proposals_failed.inc();
                            Err(self.node_error(r))
                        }
                    };
                    let _ = caller.send(answer);
                }
                Effect::Changed { caller, result } => {
                    let answer = match result {
                        Ok(index) => Ok(pb::ChangeResponse { index, error: None }),
                        // The session refused it: nothing changed.
                        Err(Refusal::Rejected(e)) => Ok(pb::ChangeResponse {
                            index: 0,
                            error: Some(e),
                        }),
                        Err(r) => Err(self.node_error(r)),
                    };
                    let _ = caller.send(answer);
                }
                Effect::Transferred { caller, result } => {
                    let answer = result.map(|to| to.0).map_err(|r| self.node_error(r));
                    let _ = caller.send(answer);
                }
                Effect::Read { caller, result, .. } => {
                    let _ = caller.send(result.map_err(|r| self.node_error(r)));
                }
                Effect::Scan { caller, scan, .. } => {
                    tokio::task::spawn_blocking(move || {
                        let _ = caller.send(Ok(scan.run()));
                    });
                }
                Effect::MembersChanged => self.learn_replicated_addresses(),
                Effect::HashState { index, state } => self.hash_state(index, state),
                Effect::StateCompared(c) => self.note_state_comparison(c),
            }
        }
    }

    /// Hashes `state`, the state machine at the state check at `index`, on
    /// a background thread; the hash comes back to the loop as a wake-up.
    fn hash_state(&self, index: u64, state: StateMachine) {
        let metrics = self.metrics.clone();
        let rx = in_background("state-hash", move || {
            let started = std::time::Instant::now();
            let hash = state.state_hash();
            metrics
                .state_hash_duration
                .observe(started.elapsed().as_secs_f64());
            hash
        });
        let back = self.hashes.clone();
        tokio::spawn(async move {
            if let Ok(hash) = rx.await {
                let _ = back.send((index, hash));
            }
        });
    }

    /// Logs and counts one comparison of this replica's state hash with a
    /// report; a mismatch means this replica's state diverged from the
    /// reporter's (docs/observability.md, "RaftkvStateDiverged").
    fn note_state_comparison(&self, c: Comparison) {
        let result = if c.equal { "match" } else { "mismatch" };
        self.metrics.state_checks.with_label_values(&[result]).inc();
        if c.equal {
            tracing::debug!(index = c.index, reporter = c.reporter, "state hash matches");
            return;
        }
        self.metrics.state_hash_mismatch_index.set(c.index as i64);
        tracing::error!(
            index = c.index,
            ours = format!("{:016x}", c.ours),
            theirs = format!("{:016x}", c.theirs),
            reporter = c.reporter,
            "state hash mismatch: this replica's state differs from the reporter's at the same \
             log index; stop serving from it and restore it from a healthy member"
        );
    }

    /// Carries out one `Ready` in the order Raft requires.
    async fn process(&mut self, mut ready: Ready, io: &mut Io) -> Result<(), String> {
        let released = std::mem::take(&mut ready.released);
        if !released.is_empty() {
            tokio::task::spawn_blocking(move || drop(released));
        }
        for e in &ready.events {
            self.record_event(e);
        }
        let mut applied = Applied::take(&mut ready);
        // A snapshot from the leader is decoded beside its persisting.
        let decoding = applied.snapshot.clone().map(|snap| {
            let limits = self.replica.limits();
            tokio::task::spawn_blocking(move || StateMachine::restore(limits, &snap.data).ok())
        });
        let was_leader = self.raft().role() == Role::Leader;
        let pending = self.replica.pending_proposals();
        if ready.must_sync {
            if ready.snapshot.is_some() {
                // An installed snapshot replaces the snapshot files: let a
                // local snapshot under way finish first (rare: a follower
                // far enough behind to need one seldom snapshots itself).
                self.finish_snapshot_job(io).await?;
            }
            let (hs, entries, snapshot) = (ready.hard_state, ready.entries, ready.snapshot);
            let took = self
                .with_storage(io, move |storage| {
                    let start = std::time::Instant::now();
                    if let Some(s) = &snapshot {
                        storage.install_snapshot(s)?;
                    }
                    if !entries.is_empty() {
                        storage.append(&entries)?;
                    }
                    if let Some(hs) = hs {
                        storage.set_hard_state(hs)?;
                    }
                    storage.sync()?;
                    Ok(start.elapsed())
                })
                .await?;
            self.metrics.wal_fsync_duration.observe(took.as_secs_f64());
        } else if let Some(hs) = ready.hard_state {
            self.write_commit(hs)?;
        }
        self.replica.persisted(ready.durable);
        self.transport.send(ready.messages);
        if let Some(job) = decoding {
            applied.restored = self
                .stepping_until(io, job)
                .await
                .map_err(|e| format!("snapshot decoding thread failed: {e}"))?;
        }
        if let Some(s) = &applied.snapshot {
            self.metrics.snapshots.inc();
            self.metrics
                .snapshot_last_index
                .set(s.meta.last.index.0 as i64);
            tracing::info!(index = s.meta.last.index.0, term = %s.meta.last.term, "installed snapshot from leader");
        }
        self.replica.advance(applied, self.now())?;
        if was_leader && self.raft().role() != Role::Leader && pending > 0 {
            tracing::info!(pending, "leadership lost with proposals in flight");
        }
        self.deliver();
        if self.pending_adoption.is_some() {
            self.adopt_snapshot(io).await?;
        }
        if self.replica.snapshot_due() && io.job.is_none() {
            self.start_snapshot(io);
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

    /// Runs `f` on the storage on a blocking thread, and meanwhile keeps
    /// stepping peer messages, ticks and client inputs into the core. It
    /// does not take a `Ready` meanwhile: what those steps produce leaves
    /// only after `f` is done (see the module docs), and the snapshot
    /// pipeline waits too (its stages need the loop between `Ready`s).
    async fn with_storage<T: Send + 'static>(
        &mut self,
        io: &mut Io,
        f: impl FnOnce(&mut Storage) -> Result<T, storage::StorageError> + Send + 'static,
    ) -> Result<T, String> {
        let mut storage = self
            .storage
            .take()
            .ok_or("storage lost after an earlier failure")?;
        let job = tokio::task::spawn_blocking(move || {
            let r = f(&mut storage);
            (storage, r)
        });
        let (storage, result) = self
            .stepping_until(io, job)
            .await
            .map_err(|e| format!("storage thread failed: {e}"))?;
        self.storage = Some(storage);
        result.map_err(|e| format!("storage: {e}"))
    }

    /// Starts the snapshot the replica decided on: copies the state machine
    /// (on the loop) and encodes the copy on a blocking thread.
    fn start_snapshot(&mut self, io: &mut Io) {
        let started = std::time::Instant::now();
        let (index, sm) = self.replica.begin_snapshot();
        let copy = started.elapsed();
        io.job = Some(in_background("snapshot", move || {
            let t = std::time::Instant::now();
            let data = sm.snapshot();
            let times = SnapshotTimes {
                started,
                copy,
                encode: t.elapsed(),
            };
            // The copy is dropped here, off the loop, too.
            drop(sm);
            Background::Encoded { index, data, times }
        }));
    }

    /// The next snapshot stage: compact the core's log with the encoded
    /// snapshot and write its file beside the WAL, or adopt the written
    /// file (which deletes what it replaces).
    fn snapshot_stage_done(&mut self, done: Background, io: &mut Io) -> Result<(), String> {
        match done {
            Background::Encoded { index, data, times } => {
                let Some(snap) = self.replica.finish_snapshot(index, data, self.now()) else {
                    tracing::info!(index, "dropped a local snapshot: a newer one was installed");
                    return Ok(());
                };
                let dir = self
                    .storage
                    .as_ref()
                    .ok_or("storage lost after an earlier failure")?
                    .snapshot_dir();
                io.job = Some(in_background("snapshot", move || {
                    let path = storage::write_snapshot_file(&dir, &snap);
                    Background::Written { index, path, times }
                }));
            }
            Background::Written { index, path, times } => {
                let path = path.map_err(|e| format!("storage: saving a snapshot: {e}"))?;
                self.pending_adoption = Some((index, path, times));
            }
        }
        Ok(())
    }

    /// Waits for `job`, stepping peer messages, ticks and client inputs
    /// into the core meanwhile (but taking no `Ready`).
    async fn stepping_until<T, E: std::fmt::Display>(
        &mut self,
        io: &mut Io,
        job: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, String> {
        tokio::pin!(job);
        loop {
            let wake = if io.closed {
                None
            } else {
                tokio::select! {
                    biased;
                    r = &mut job => return r.map_err(|e| e.to_string()),
                    wake = io.next(false) => Some(wake),
                }
            };
            match wake {
                Some(wake) => {
                    self.on_wake(wake, io)?;
                    io.stepped = true;
                    let beats = self.replica.take_heartbeats();
                    if !beats.is_empty() {
                        self.transport.send(beats);
                    }
                }
                None => return job.await.map_err(|e| e.to_string()),
            }
        }
    }

    /// Adopts a written snapshot file on the storage thread.
    async fn adopt_snapshot(&mut self, io: &mut Io) -> Result<(), String> {
        let Some((index, path, times)) = self.pending_adoption.take() else {
            return Ok(());
        };
        let adopted = self
            .with_storage(io, move |s| s.adopt_snapshot(index, &path))
            .await
            .map_err(|e| format!("saving a snapshot: {e}"))?;
        if !adopted {
            tracing::info!(index, "dropped a local snapshot: a newer one was installed");
            return Ok(());
        }
        let took = times.started.elapsed();
        self.metrics.snapshots.inc();
        self.metrics.snapshot_last_index.set(index as i64);
        self.metrics.snapshot_duration.observe(took.as_secs_f64());
        self.metrics
            .snapshot_copy_duration
            .observe(times.copy.as_secs_f64());
        tracing::info!(
            index,
            keys = self.replica.state_machine().len(),
            took_ms = took.as_millis() as u64,
            copy_ms = times.copy.as_millis() as u64,
            encode_ms = times.encode.as_millis() as u64,
            "snapshot taken"
        );
        Ok(())
    }

    /// Waits for the snapshot under way, if any, to be done and adopted.
    /// Steps peer messages, ticks and client inputs meanwhile, as during a
    /// sync: a follower installing the leader's snapshot while its own is
    /// encoded keeps answering heartbeats (a snapshot of a large state takes
    /// seconds).
    async fn finish_snapshot_job(&mut self, io: &mut Io) -> Result<(), String> {
        while let Some(job) = io.job.take() {
            let done = self
                .stepping_until(io, job)
                .await
                .map_err(|_| "snapshot thread failed".to_string())?;
            self.snapshot_stage_done(done, io)?;
        }
        self.adopt_snapshot(io).await
    }
}
