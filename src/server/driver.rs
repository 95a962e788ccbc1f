//! The node loop: one task owns the consensus core, the state machine and the
//! storage, and is the only place they change.
//!
//! Each turn: wait for an input or the next tick, drain every queued input
//! (a batch, so many proposals share one fsync), then take the core's `Ready`
//! and carry it out in the order Raft requires: persist (one sync, on a
//! blocking thread), send, then let the replica restore, apply and answer
//! (`crate::replica`, shared with the simulator), deliver its answers, and
//! save a snapshot when it is due. This file is the I/O shell: what is
//! decided, and in which order clients are answered, is the replica's.

use super::config::Config;
use super::node::{Input, MemberAddrs, NodeError, ReadAnswer, Reply};
use super::transport::Transport;
use crate::kv::{Limits, StateMachine};
use crate::observe::Metrics;
use crate::pb;
use crate::raft::{self, NodeId, Raft, Ready, Role};
use crate::replica::{Applied, Callers, Effect, Refusal, Replica};
use crate::storage::Storage;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Longest wait for a leadership transfer's outcome; the core itself gives
/// up after an election timeout, so this only bounds a lost decision.
const TRANSFER_LIMIT: Duration = Duration::from_secs(5);

/// The node's callers: oneshot senders that gRPC handlers wait on.
pub(super) struct Waiters;

impl Callers for Waiters {
    type Write = Reply<pb::WriteResponse>;
    type Change = Reply<u64>;
    type Read = Reply<ReadAnswer>;
}

/// Everything the loop owns: the replica (core, state machine, waiting
/// requests) and the I/O around it.
pub struct Driver {
    pub(super) id: NodeId,
    pub(super) cluster_id: String,
    pub(super) replica: Replica<Waiters>,
    /// Taken while a blocking thread writes; always back before the next turn.
    pub(super) storage: Option<Storage>,
    pub(super) transport: Transport,
    pub(super) metrics: Metrics,
    pub(super) clock: std::time::Instant,
    /// Client addresses of the members, for not-leader redirects.
    pub(super) client_addrs: BTreeMap<u64, String>,
    pub(super) peer_addrs: BTreeMap<u64, String>,
    pub(super) last_leader: Option<NodeId>,
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
            ..Limits::default()
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
        let mut driver = Driver {
            id: NodeId(p.config.id),
            cluster_id: p.cluster_id,
            replica: Replica::new(
                p.raft,
                p.sm,
                p.applied,
                limits,
                raft::Instant(p.clock.elapsed()),
            ),
            storage: Some(p.storage),
            transport: p.transport,
            metrics: p.metrics,
            clock: p.clock,
            client_addrs,
            peer_addrs,
            last_leader: None,
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

    pub(super) fn raft(&self) -> &Raft {
        self.replica.raft()
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
                    self.replica.tick(now);
                    true
                }
            };
            while let Ok(input) = rx.try_recv() {
                self.handle(input);
            }
            let ready = self.replica.ready();
            self.process(ready).await?;
            self.observe(ticked);
            if self.stop_due() {
                if let Some((_, done)) = self.stopping.take() {
                    self.replica.fail_all("the node stopped");
                    self.deliver();
                    let _ = done.send(());
                }
                return Ok(());
            }
        }
    }

    fn handle(&mut self, input: Input) {
        let now = self.now();
        match input {
            Input::Peer(m) => self.replica.step(m, now),
            Input::Write(req, reply) => {
                if self.stopping.is_some() {
                    let _ = reply.send(Err(NodeError::Stopped));
                    return;
                }
                self.replica.propose_write(req, reply, now);
            }
            Input::Read(kind, reply) => {
                if self.stopping.is_some() {
                    let _ = reply.send(Err(NodeError::Stopped));
                    return;
                }
                self.replica.read(kind, reply, now);
            }
            Input::Change(change, addrs, reply) => {
                if self.stopping.is_some() {
                    let _ = reply.send(Err(NodeError::Stopped));
                    return;
                }
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
                self.replica.propose_change(change, reply, now);
            }
            Input::Transfer(to, reply) => {
                let started = match to.or_else(|| self.best_successor()) {
                    None => Err(NodeError::Busy("no voter to transfer leadership to".into())),
                    Some(to) => match self.replica.raft_mut().transfer_leadership(to, now) {
                        Ok(()) => Ok(to),
                        Err(e) => Err(self.node_error(self.replica.refusal(e))),
                    },
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
                if self.raft().role() == Role::Leader {
                    if let Some(to) = self.best_successor() {
                        tracing::info!(to = %to, "transferring leadership before shutdown");
                        if let Err(e) = self.replica.raft_mut().transfer_leadership(to, now) {
                            tracing::warn!(error = ?e, "leadership transfer failed");
                        }
                    }
                }
                self.stopping = Some((std::time::Instant::now() + grace, reply));
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

    fn stop_due(&self) -> bool {
        match &self.stopping {
            Some((deadline, _)) => {
                self.raft().role() != Role::Leader || std::time::Instant::now() >= *deadline
            }
            None => false,
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
        }
    }

    /// Carries out the replica's decisions: answers to waiting callers,
    /// member addresses to learn.
    fn deliver(&mut self) {
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
                    let _ = caller.send(result.map_err(|r| self.node_error(r)));
                }
                Effect::Read { caller, result, .. } => {
                    let _ = caller.send(result.map_err(|r| self.node_error(r)));
                }
                Effect::MembersChanged => self.learn_replicated_addresses(),
            }
        }
    }

    /// Carries out one `Ready` in the order Raft requires.
    async fn process(&mut self, mut ready: Ready) -> Result<(), String> {
        for e in &ready.events {
            self.record_event(e);
        }
        let aborted = ready
            .events
            .iter()
            .any(|e| matches!(e, raft::Event::TransferAborted { .. }));
        self.settle_transfer(aborted);
        let applied = Applied::take(&mut ready);
        let was_leader = self.raft().role() == Role::Leader;
        let pending = self.replica.pending_proposals();
        if ready.must_sync {
            self.persist(ready.hard_state, ready.entries, ready.snapshot)
                .await?;
        } else if let Some(hs) = ready.hard_state {
            self.write_commit(hs)?;
        }
        self.transport.send(ready.messages);
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
        if self.replica.snapshot_due() {
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

    /// Answers the caller of a leadership transfer once it is decided: `to`
    /// leads (ok), the core gave it up, another node took over, or it ran
    /// past `TRANSFER_LIMIT`.
    fn settle_transfer(&mut self, aborted: bool) {
        let Some((to, deadline, _)) = &self.transfer else {
            return;
        };
        let to = *to;
        let outcome = match self.raft().leader() {
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

    /// Takes the snapshot the replica decided on and saves it on a blocking
    /// thread.
    async fn take_snapshot(&mut self) -> Result<(), String> {
        let start = std::time::Instant::now();
        let snap = self.replica.take_snapshot();
        let index = snap.meta.last.index.0;
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
        self.metrics.snapshots.inc();
        self.metrics.snapshot_last_index.set(index as i64);
        self.metrics
            .snapshot_duration
            .observe(start.elapsed().as_secs_f64());
        tracing::info!(
            index,
            keys = self.replica.state_machine().len(),
            took_ms = start.elapsed().as_millis() as u64,
            "snapshot taken"
        );
        Ok(())
    }
}
