//! The deterministic simulator: whole clusters of the product's own code —
//! the `raft` core, the node's sans-I/O `replica` layer (apply, answer,
//! restore, snapshot, cluster time) and the real `kv::StateMachine` — in one
//! thread, with virtual time, a seeded PRNG, drifting clocks, an adversarial
//! network, crashes, pauses, membership changes and leadership transfers.
//! Every step is checked for safety. Only tokio, sockets and the disk are
//! replaced (the disk by `Disk` below).

use bytes::Bytes;
use prost::Message as _;
use raftkv::kv::{Limits, StateMachine};
use raftkv::pb;
use raftkv::raft::{
    Broken, ConfChange, Config, Entry, Event, HardState, Instant, LogIndex, Membership, Message,
    NodeId, Payload, Persisted, Raft, Ready, Role, Snapshot, Term,
};
use raftkv::replica::{Applied, Replica};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::time::Duration;

use crate::linearizability::{Op, OpKind};

#[path = "clients.rs"]
pub mod clients;
#[path = "script.rs"]
pub mod script;
use clients::{Answer, Call, Client, ClientMsg, Cmd, SESSION_CAP, Sim, command_name};
use script::Rule;

const MS: u64 = 1_000_000;

/// What a run varies besides the seed.
#[derive(Clone, Debug)]
pub struct Options {
    pub broken: Broken,
    /// Let clocks drift beyond the configured bound (a broken environment).
    pub drift_beyond_bound: bool,
    pub fault_phase: Duration,
    pub settle_phase: Duration,
    /// Longest gap between two faults.
    pub max_fault_gap: Duration,
    /// Off only to show what a client would see without it: the lease-overlap
    /// check stops a run at the first overlap, before any stale read happens.
    pub lease_overlap_check: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            broken: Broken::None,
            drift_beyond_bound: false,
            fault_phase: Duration::from_secs(3),
            settle_phase: Duration::from_secs(6),
            max_fault_gap: Duration::from_millis(250),
            lease_overlap_check: true,
        }
    }
}

/// Which check failed: tests assert on this, not on the message text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    ElectionSafety,
    LeaseSafety,
    StateMachineSafety,
    LeaderCompleteness,
    LogMatching,
    /// Cluster time ran ahead of real time by more than the drift bound
    /// (keys would expire early).
    ClusterTime,
    /// Two replicas hold different states at the same applied index (by
    /// their hashes), or a state machine broke one of its invariants.
    ReplicaState,
    /// The core (or the simulator) panicked, e.g. on truncating a committed entry.
    Panic,
    Liveness,
    Linearizability,
    /// A request retried through its session was answered otherwise than
    /// its first attempt took effect (a membership change that committed,
    /// answered as refused).
    ExactlyOnce,
    /// A directed scenario did not reach the state it steers towards: the
    /// script needs fixing, the protocol is not at fault.
    Script,
}

impl Check {
    fn name(self) -> &'static str {
        match self {
            Check::ElectionSafety => "election safety",
            Check::LeaseSafety => "lease safety",
            Check::StateMachineSafety => "state machine safety",
            Check::LeaderCompleteness => "leader completeness",
            Check::LogMatching => "log matching",
            Check::ClusterTime => "cluster time",
            Check::ReplicaState => "replica state",
            Check::Panic => "panic",
            Check::Liveness => "liveness",
            Check::Linearizability => "linearizability",
            Check::ExactlyOnce => "exactly once",
            Check::Script => "script",
        }
    }
}

/// A failed check and what exactly it saw.
#[derive(Debug)]
pub struct Violation {
    pub check: Check,
    pub detail: String,
}

fn violation(check: Check, detail: String) -> Outcome {
    Err(Violation { check, detail })
}

#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub ops: usize,
    /// Answered ops by command (the rest are in the history as unknown).
    pub by_command: BTreeMap<&'static str, usize>,
    pub unknown: usize,
    /// Writes answered SESSION_EXPIRED (their session was evicted).
    pub session_expired: usize,
    /// Largest lag of a read's cluster time behind real time (ms): what
    /// time entries and failovers lost since the start of the run.
    pub max_read_lag_ms: u64,
    pub events: u64,
    pub faults: usize,
    pub elections: usize,
    pub snapshots: usize,
    /// Deliveries, ticks and client requests stepped into a node's core
    /// while its `Ready` was being synced (the node loop's `stepping_until`).
    pub steps_during_sync: u64,
    /// Heartbeats and answers sent during a sync (`Raft::take_heartbeats`).
    pub heartbeats_during_sync: u64,
    /// Local snapshots compacted into the core (`finish_snapshot` returned one).
    pub local_snapshots: usize,
    /// Local snapshots dropped because the leader's was installed while they
    /// were encoded (`finish_snapshot` returned None).
    pub stale_snapshots: usize,
    /// Pairs of replica state hashes compared at the same applied index
    /// (every applied entry and every restore is hashed).
    pub hash_comparisons: u64,
    /// Of those, where one side was restored from a snapshot.
    pub restored_hash_comparisons: u64,
    /// State checks compared through the product's own reports
    /// (`StateReportCmd`), as the node does at run time.
    pub state_reports_compared: u64,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.ops += o.ops;
        for (k, n) in &o.by_command {
            *self.by_command.entry(k).or_default() += n;
        }
        self.unknown += o.unknown;
        self.session_expired += o.session_expired;
        self.max_read_lag_ms = self.max_read_lag_ms.max(o.max_read_lag_ms);
        self.events += o.events;
        self.faults += o.faults;
        self.elections += o.elections;
        self.snapshots += o.snapshots;
        self.steps_during_sync += o.steps_during_sync;
        self.heartbeats_during_sync += o.heartbeats_during_sync;
        self.local_snapshots += o.local_snapshots;
        self.stale_snapshots += o.stale_snapshots;
        self.hash_comparisons += o.hash_comparisons;
        self.restored_hash_comparisons += o.restored_hash_comparisons;
        self.state_reports_compared += o.state_reports_compared;
    }
}

#[derive(Debug)]
pub struct Failure {
    pub seed: u64,
    pub check: Check,
    /// The check's name and what it saw.
    pub what: String,
    pub trace: Vec<String>,
}

impl Failure {
    /// A failure found outside the world (its trace is gone with it).
    pub fn new(seed: u64, v: Violation) -> Failure {
        Failure {
            seed,
            check: v.check,
            what: format!("{}: {}", v.check.name(), v.detail),
            trace: Vec::new(),
        }
    }
}

/// A node's clock: local = offset + rate × real.
#[derive(Clone, Copy, Debug)]
struct Clock {
    offset: u64,
    rate: f64,
}

impl Clock {
    fn local(&self, real: u64) -> Instant {
        Instant(Duration::from_nanos(
            self.offset + (real as f64 * self.rate) as u64,
        ))
    }
    fn real(&self, local: Instant) -> u64 {
        ((local.0.as_nanos() as u64).saturating_sub(self.offset) as f64 / self.rate).ceil() as u64
    }
}

/// What survived on the node's disk, with the semantics of
/// `raftkv::storage::Storage` (docs/internals.md): a snapshot received from
/// the leader replaces the whole log (`install_snapshot`), the node's own
/// snapshot drops only the entries it covers (`save_snapshot`).
#[derive(Clone, Debug, Default)]
struct Disk {
    hard_state: HardState,
    snapshot: Option<Snapshot>,
    entries: Vec<Entry>,
}

impl Disk {
    /// One `Ready`'s writes, in the driver's order: snapshot, entries, hard state.
    fn write(&mut self, hs: Option<HardState>, snap: Option<&Snapshot>, entries: &[Entry]) {
        if let Some(s) = snap {
            self.install_snapshot(s.clone());
        }
        if let Some(first) = entries.first() {
            let keep = self
                .entries
                .iter()
                .position(|e| e.index() >= first.index())
                .unwrap_or(self.entries.len());
            self.entries.truncate(keep);
            self.entries.extend(entries.iter().cloned());
        }
        if let Some(hs) = hs {
            self.hard_state = hs;
        }
    }
    /// `Storage::save_snapshot`: the node's own snapshot of applied state;
    /// the entries after it stay.
    fn save_snapshot(&mut self, s: Snapshot) {
        let idx = s.meta.last.index;
        self.entries.retain(|e| e.index() > idx);
        self.snapshot = Some(s);
    }
    /// `Storage::install_snapshot`: a snapshot from the leader discards the
    /// whole stored log, entries after the snapshot's index included.
    fn install_snapshot(&mut self, s: Snapshot) {
        self.entries.clear();
        self.snapshot = Some(s);
    }
    fn term_at(&self, index: LogIndex) -> Option<Term> {
        if let Some(s) = &self.snapshot {
            if s.meta.last.index == index {
                return Some(s.meta.last.term);
            }
        }
        self.entries
            .iter()
            .find(|e| e.index() == index)
            .map(|e| e.term())
    }
    fn first_entry_index(&self) -> LogIndex {
        self.snapshot
            .as_ref()
            .map_or(LogIndex(1), |s| s.meta.last.index.next())
    }
}

struct Node {
    id: NodeId,
    /// The running node's logic, as in the product; None while down.
    replica: Option<Replica<Sim>>,
    clock: Clock,
    disk: Disk,
    incarnation: u64,
    /// A paused process (SIGSTOP) runs nothing until then.
    busy_until: u64,
    /// The ready batch whose fsync is under way. Meanwhile the node steps
    /// deliveries, ticks and client requests into its core but takes no
    /// `Ready` (the node loop's `with_storage`).
    in_flight: Option<Ready>,
    /// A leader's snapshot, persisted and sent on, being decoded off the
    /// loop before it is applied (the loop steps inputs meanwhile, and takes
    /// no `Ready` either).
    decoding: Option<Applied>,
    /// Something was stepped during the sync or decoding: its output waits
    /// in the core, and the loop takes the next `Ready` as soon as it is
    /// back (the node loop's `io.stepped`).
    stepped_while_busy: bool,
    /// Every fsync takes this long (a script's slow disk), if set.
    sync_time: Option<u64>,
    /// The local snapshot under way (the node loop's `io.job` and
    /// `pending_adoption`), at most one.
    snapshot_job: Option<SnapshotJob>,
    /// Numbers the snapshot jobs, so that a crashed node's stale stage
    /// events are ignored.
    snapshot_jobs: u64,
    /// A hard state written without an fsync (`Ready::must_sync` false: only
    /// the commit index changed). The next synced write makes it durable; a
    /// crash before that keeps it or loses it, at random.
    unsynced_hard_state: Option<HardState>,
    lease_real_expiry: Option<u64>,
}

/// A local snapshot built off the node loop, as `server::driver` does.
struct SnapshotJob {
    /// Its number in `Node::snapshot_jobs`.
    id: u64,
    stage: SnapshotStage,
    /// The current stage finished while the loop could not look (a sync
    /// under way): it is handled once the sync is done.
    stage_done: bool,
    /// When the current stage's thread finishes.
    due: u64,
}

enum SnapshotStage {
    /// `begin_snapshot`'s copy, being encoded.
    Encoding { index: u64, sm: StateMachine },
    /// `finish_snapshot` compacted the core; the file is being written.
    Writing(Snapshot),
    /// The file is written; the storage adopts it after the next `Ready`.
    Written(Snapshot),
}

enum Ev {
    Deliver(Message),
    ToNode(NodeId, ClientMsg),
    ToClient(usize, u64, Answer),
    Tick(NodeId, u64),
    FsyncDone(NodeId, u64),
    /// A leader's snapshot is decoded (node, incarnation).
    Decoded(NodeId, u64),
    /// (node, incarnation, job): a snapshot stage's thread finished.
    SnapshotStage(NodeId, u64, u64),
    /// (node, incarnation, index, hash): a state check's hash is computed.
    Hashed(NodeId, u64, u64, u64),
    ClientNext(usize),
    ClientTimeout(usize, u64),
    Fault,
    Heal(u64),
    Restart(NodeId),
    /// (node, peer): the node's connection to the peer broke (a reset, as
    /// the kernel sends for a process that died, or a proxy's).
    ConnectionLost(NodeId, NodeId),
}

pub struct World {
    seed: u64,
    opts: Options,
    rng: StdRng,
    now: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: HashMap<u64, Ev>,
    next_ev: u64,
    nodes: BTreeMap<NodeId, Node>,
    cfg_template: Config,
    clients: Vec<Client>,
    history: Vec<Op>,
    /// (client id, seq) of each op of the history sent with a session.
    op_sessions: Vec<Option<(u64, u64)>>,
    // network faults
    blocked: BTreeSet<(NodeId, NodeId)>,
    partition_epoch: u64,
    loss: f64,
    duplicate: f64,
    // directed scenarios (tests/sim/script.rs)
    /// Messages a script drops, link by link.
    rules: Vec<Rule>,
    /// Nodes whose timer a script holds: they never time out on their own.
    held: BTreeSet<NodeId>,
    /// A scripted client sends each request once, to the node the script
    /// names, and waits for its answer; a redirect ends it unanswered.
    scripted_clients: bool,
    /// The leaders' state check schedule (none in directed scenarios: their
    /// scripts count on the entries they cause).
    state_check_interval: Option<Duration>,
    // checks
    leaders: HashMap<Term, NodeId>,
    committed: BTreeMap<u64, (Term, Payload)>,
    /// For each committed index: the highest term any leader had when it was
    /// first applied (its commit term is at most that).
    commit_term_bound: BTreeMap<u64, Term>,
    /// Cluster time after each committed command entry, from the log: what
    /// every state machine must hold once it has applied that entry.
    cluster_time: BTreeMap<u64, u64>,
    /// Cluster time of the first entry of each (client id, seq): when a
    /// request whose answer was lost took effect, if it did.
    first_proposed: HashMap<(u64, u64), u64>,
    /// The first state hash seen at each applied index, and by whom.
    state_hashes: HashMap<u64, (NodeId, u64)>,
    /// Comparisons of the product's state reports that found a difference.
    diverged: Vec<String>,
    trace: VecDeque<String>,
    stats: Stats,
    faults_on: bool,
    clients_on: bool,
}

type Outcome = Result<(), Violation>;

/// The text a panic carried, for failure reports.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

impl Node {
    fn new(id: NodeId, clock: Clock, disk: Disk) -> Node {
        Node {
            id,
            replica: None,
            clock,
            disk,
            incarnation: 0,
            busy_until: 0,
            in_flight: None,
            decoding: None,
            stepped_while_busy: false,
            sync_time: None,
            snapshot_job: None,
            snapshot_jobs: 0,
            unsynced_hard_state: None,
            lease_real_expiry: None,
        }
    }

    fn raft(&self) -> Option<&Raft> {
        self.replica.as_ref().map(|r| r.raft())
    }
}

/// The state machines' limits: the product's, with few sessions and small
/// byte bounds on kept answers, so that eviction by count and by bytes,
/// of sessions that hold answers too, happens in every run.
pub(super) fn limits() -> Limits {
    Limits {
        max_sessions: SESSION_CAP,
        max_kept_bytes_per_client: KEPT_BYTES_PER_CLIENT,
        max_kept_bytes: KEPT_BYTES,
        ..Limits::default()
    }
}

/// About three kept answers of the workload (each about 70 bytes with its
/// overhead) per client, and fewer than one each for all of them.
const KEPT_BYTES_PER_CLIENT: usize = 220;
const KEPT_BYTES: usize = 200;

/// How often a simulated leader proposes a state check.
const STATE_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// What a founding member has on disk before its first start.
fn founder_disk(founders: &Membership) -> Disk {
    let p = raftkv::raft::bootstrap(founders.clone());
    Disk {
        hard_state: p.hard_state,
        snapshot: None,
        entries: p.entries,
    }
}

impl World {
    pub fn new(seed: u64, opts: Options) -> World {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = if rng.random_bool(0.5) { 3 } else { 5 };
        let mut cfg = Config::new(NodeId(0));
        cfg.snapshot_threshold = rng.random_range(10..60);
        cfg.snapshot_chunk_bytes = rng.random_range(64..512);
        cfg.max_inflight = rng.random_range(1..8);
        cfg.max_batch_entries = rng.random_range(1..16);
        let founders = Membership::new((0..n).map(NodeId));
        let rho = cfg.max_clock_drift;
        let mut nodes = BTreeMap::new();
        // One spare node (id n) can be added by membership changes.
        for i in 0..=n {
            let id = NodeId(i);
            let rate = if opts.drift_beyond_bound {
                rng.random_range(0.6..1.4)
            } else {
                rng.random_range(1.0 - rho..=1.0 + rho)
            };
            let clock = Clock {
                offset: rng.random_range(0..1_000) * MS,
                rate,
            };
            let disk = if i < n {
                founder_disk(&founders)
            } else {
                Disk::default()
            };
            nodes.insert(id, Node::new(id, clock, disk));
        }
        let mut w = World::assemble(seed, opts, rng, cfg, nodes);
        for c in 0..w.clients.len() {
            let d = w.rng.random_range(0..50) * MS;
            w.schedule(d, Ev::ClientNext(c));
        }
        w.schedule(100 * MS, Ev::Fault);
        w
    }

    /// The world around `nodes`, started, with three idle clients.
    fn assemble(
        seed: u64,
        opts: Options,
        rng: StdRng,
        mut cfg: Config,
        nodes: BTreeMap<NodeId, Node>,
    ) -> World {
        cfg.broken = opts.broken;
        let clients = (0..3).map(|_| Client::default()).collect();
        let mut w = World {
            seed,
            opts,
            rng,
            now: 0,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            next_ev: 0,
            nodes,
            cfg_template: cfg,
            clients,
            history: Vec::new(),
            op_sessions: Vec::new(),
            blocked: BTreeSet::new(),
            partition_epoch: 0,
            loss: 0.0,
            duplicate: 0.0,
            rules: Vec::new(),
            held: BTreeSet::new(),
            scripted_clients: false,
            state_check_interval: Some(STATE_CHECK_INTERVAL),
            leaders: HashMap::new(),
            committed: BTreeMap::new(),
            commit_term_bound: BTreeMap::new(),
            cluster_time: BTreeMap::new(),
            first_proposed: HashMap::new(),
            state_hashes: HashMap::new(),
            diverged: Vec::new(),
            trace: VecDeque::new(),
            stats: Stats::default(),
            faults_on: true,
            clients_on: true,
        };
        let ids: Vec<NodeId> = w.nodes.keys().copied().collect();
        for id in ids {
            w.start_node(id);
        }
        w
    }

    pub fn history(&self) -> &[Op] {
        &self.history
    }

    /// Runs the faults, then the settling phase, then checks liveness.
    pub fn run(&mut self) -> Result<Stats, Failure> {
        let fault_end = self.opts.fault_phase.as_nanos() as u64;
        let clients_end = fault_end + 1_000 * MS;
        let end = fault_end + self.opts.settle_phase.as_nanos() as u64;
        let mut healed = false;
        while let Some(t) = self.next_due(end) {
            self.now = t;
            if !healed && t >= fault_end {
                healed = true;
                self.heal_everything();
            }
            if t >= clients_end {
                self.clients_on = false;
            }
            self.handle_next()?;
            if !self.clients_on && self.clients.iter().all(|c| c.pending.is_none()) && healed {
                break;
            }
        }
        self.end_checks()?;
        // Liveness: with faults over, every client operation completed.
        if let Some((i, _)) = self
            .clients
            .iter()
            .enumerate()
            .find(|(_, c)| c.pending.is_some())
        {
            let waited = (self.now - fault_end) / 1_000_000_000;
            return Err(self.failure(Violation {
                check: Check::Liveness,
                detail: format!("client {i} still waiting {waited}s after faults stopped"),
            }));
        }
        Ok(self.close_history())
    }

    /// Ends the history: an op never answered took effect, if at all, at
    /// its first entry's cluster time; counts ops by command.
    pub(super) fn close_history(&mut self) -> Stats {
        for (op, session) in self.history.iter_mut().zip(&self.op_sessions) {
            if op.at.is_none() {
                op.at = session.and_then(|k| self.first_proposed.get(&k).copied());
            }
            if op.ret.is_some() {
                *self
                    .stats
                    .by_command
                    .entry(command_name(&op.kind))
                    .or_default() += 1;
            } else {
                self.stats.unknown += 1;
            }
        }
        self.stats.ops = self.history.len();
        self.stats.clone()
    }

    /// The time of the next event, if one is due by `until`.
    fn next_due(&self, until: u64) -> Option<u64> {
        self.queue
            .peek()
            .map(|Reverse((t, _))| *t)
            .filter(|t| *t <= until)
    }

    /// Handles the next event with every per-step check; a failed check or a
    /// panic (the core's own invariants) ends the run.
    fn handle_next(&mut self) -> Result<(), Failure> {
        let Reverse((t, id)) = self.queue.pop().expect("an event is due");
        self.now = t;
        let ev = self.events.remove(&id).expect("event");
        self.stats.events += 1;
        let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.handle(ev)));
        let outcome = match handled {
            Ok(outcome) => outcome,
            Err(p) => violation(Check::Panic, panic_message(&*p)),
        };
        outcome.map_err(|v| self.failure(v))?;
        if self.stats.events % 64 == 0 {
            self.check_log_matching().map_err(|v| self.failure(v))?;
        }
        Ok(())
    }

    /// At the end of a run: the logs match and there is a leader.
    fn end_checks(&self) -> Result<(), Failure> {
        self.check_log_matching().map_err(|v| self.failure(v))?;
        let leader = self
            .nodes
            .values()
            .find(|n| n.raft().is_some_and(|r| r.role() == Role::Leader));
        if leader.is_none() {
            return Err(self.failure(Violation {
                check: Check::Liveness,
                detail: "no leader at the end of the run".into(),
            }));
        }
        Ok(())
    }

    fn failure(&self, v: Violation) -> Failure {
        Failure {
            trace: self.trace.iter().cloned().collect(),
            ..Failure::new(self.seed, v)
        }
    }

    fn log(&mut self, line: String) {
        if self.trace.len() >= 400 {
            self.trace.pop_front();
        }
        self.trace
            .push_back(format!("{:>9.3}ms {line}", self.now as f64 / MS as f64));
    }

    fn schedule(&mut self, delay: u64, ev: Ev) {
        let id = self.next_ev;
        self.next_ev += 1;
        self.queue.push(Reverse((self.now + delay, id)));
        self.events.insert(id, ev);
    }

    fn node_cfg(&self, id: NodeId, incarnation: u64) -> Config {
        let mut c = self.cfg_template.clone();
        c.id = id;
        c.seed = self
            .seed
            .wrapping_mul(31)
            .wrapping_add(id.0 * 1000 + incarnation);
        c
    }

    fn start_node(&mut self, id: NodeId) {
        let now = self.now;
        let inc = self.nodes[&id].incarnation + 1;
        let cfg = self.node_cfg(id, inc);
        let node = self.nodes.get_mut(&id).expect("node");
        node.incarnation = inc;
        let persisted = Persisted {
            hard_state: node.disk.hard_state,
            snapshot: node.disk.snapshot.clone(),
            entries: node.disk.entries.clone(),
        };
        let (sm, applied) = match &node.disk.snapshot {
            Some(s) => (
                StateMachine::restore(limits(), &s.data).expect("a snapshot this node saved"),
                s.meta.last.index.0,
            ),
            None => (StateMachine::new(limits()), 0),
        };
        let local = node.clock.local(now);
        let raft = Raft::new(cfg, persisted, local);
        let mut replica = Replica::new(raft, sm, applied, limits(), local);
        replica.set_audit(true);
        replica.set_state_check_interval(self.state_check_interval);
        node.replica = Some(replica);
        node.busy_until = now;
        node.in_flight = None;
        node.decoding = None;
        node.snapshot_job = None;
        node.lease_real_expiry = None;
        self.log(format!("n{id} starts (incarnation {inc})"));
        self.schedule(10 * MS, Ev::Tick(id, inc));
    }

    /// Stops a running node; what it had not fsynced is lost; its peers see
    /// their connections to it reset if `resets` (a killed process's socket
    /// is closed by the kernel). False if it was already down.
    fn crash(&mut self, id: NodeId, resets: bool) -> bool {
        let flushed_anyway = self.rng.random_bool(0.5);
        let node = self.nodes.get_mut(&id).expect("node");
        if node.replica.take().is_none() {
            return false;
        }
        if let Some(hs) = node.unsynced_hard_state.take() {
            if flushed_anyway {
                node.disk.hard_state = hs;
            }
        }
        node.in_flight = None;
        node.decoding = None;
        node.snapshot_job = None;
        node.lease_real_expiry = None;
        node.busy_until = 0;
        self.log(format!("n{id} CRASHES (unsynced writes lost)"));
        if resets {
            let peers: Vec<NodeId> = self.nodes.keys().copied().filter(|p| *p != id).collect();
            for p in peers {
                self.reset_connection(p, id);
            }
        }
        true
    }

    /// `at`'s connection to `peer` breaks: `at` learns it after a network delay.
    pub(super) fn reset_connection(&mut self, at: NodeId, peer: NodeId) {
        let d = self.net_delay();
        self.schedule(d, Ev::ConnectionLost(at, peer));
    }

    // ---------------------------------------------------------------- events

    fn handle(&mut self, ev: Ev) -> Outcome {
        match ev {
            Ev::Hashed(id, inc, index, hash) => {
                let node = &self.nodes[&id];
                if node.incarnation != inc || node.replica.is_none() {
                    return Ok(());
                }
                if node.busy_until > self.now {
                    let t = node.busy_until - self.now;
                    self.schedule(t, Ev::Hashed(id, inc, index, hash));
                    return Ok(());
                }
                self.note_step(id);
                let local = self.local(id);
                self.replica(id).state_hashed(index, hash, local);
                self.deliver(id);
                if let Some(d) = self.diverged.pop() {
                    return violation(Check::ReplicaState, d);
                }
                self.after_input(id)
            }
            Ev::Tick(id, inc) => {
                let node = &self.nodes[&id];
                if node.incarnation != inc || node.replica.is_none() {
                    return Ok(());
                }
                self.schedule(10 * MS, Ev::Tick(id, inc));
                // A paused node runs no timers; its next tick comes later. A
                // held timer (a script's) does not run at all. A syncing node
                // ticks (the loop steps ticks while a sync runs).
                if self.nodes[&id].busy_until > self.now || self.held.contains(&id) {
                    return Ok(());
                }
                self.note_step(id);
                let local = self.local(id);
                self.replica(id).tick(local);
                self.after_input(id)
            }
            Ev::Deliver(msg) => {
                let to = msg.to;
                if self.held_by_script(&msg) {
                    self.schedule(MS, Ev::Deliver(msg));
                    return Ok(());
                }
                if self.nodes[&to].replica.is_none() || self.cut_by_script(&msg) {
                    return Ok(());
                }
                if self.nodes[&to].busy_until > self.now {
                    let t = self.nodes[&to].busy_until - self.now;
                    self.schedule(t, Ev::Deliver(msg));
                    return Ok(());
                }
                self.note_step(to);
                let local = self.local(to);
                self.replica(to).step(msg, local);
                self.after_input(to)
            }
            Ev::FsyncDone(id, inc) => {
                if self.nodes[&id].incarnation != inc || self.nodes[&id].replica.is_none() {
                    return Ok(());
                }
                // The sync's thread is done, but a paused loop sees it later.
                if self.nodes[&id].busy_until > self.now {
                    let t = self.nodes[&id].busy_until - self.now;
                    self.schedule(t, Ev::FsyncDone(id, inc));
                    return Ok(());
                }
                let p = self.nodes.get_mut(&id).unwrap().in_flight.take();
                if let Some(p) = p {
                    self.complete_ready(id, p)?;
                }
                if self.nodes[&id].decoding.is_some() {
                    return self.check_leader_and_lease(id);
                }
                self.back_to_loop(id)
            }
            Ev::Decoded(id, inc) => {
                if self.nodes[&id].incarnation != inc || self.nodes[&id].replica.is_none() {
                    return Ok(());
                }
                if self.nodes[&id].busy_until > self.now {
                    let t = self.nodes[&id].busy_until - self.now;
                    self.schedule(t, Ev::Decoded(id, inc));
                    return Ok(());
                }
                if let Some(applied) = self.nodes.get_mut(&id).unwrap().decoding.take() {
                    self.apply_ready(id, applied)?;
                }
                self.back_to_loop(id)
            }
            Ev::SnapshotStage(id, inc, job) => {
                let node = &self.nodes[&id];
                if node.incarnation != inc
                    || node.replica.is_none()
                    || node.snapshot_job.as_ref().is_none_or(|j| j.id != job)
                {
                    return Ok(());
                }
                if node.busy_until > self.now {
                    let t = node.busy_until - self.now;
                    self.schedule(t, Ev::SnapshotStage(id, inc, job));
                    return Ok(());
                }
                if node.in_flight.is_some() || node.decoding.is_some() {
                    // The loop looks at snapshot stages only between `Ready`s.
                    self.nodes
                        .get_mut(&id)
                        .unwrap()
                        .snapshot_job
                        .as_mut()
                        .unwrap()
                        .stage_done = true;
                    return Ok(());
                }
                self.snapshot_stage_done(id);
                self.after_input(id)
            }
            Ev::ToNode(id, msg) => self.client_request(id, msg),
            Ev::ToClient(c, attempt, answer) => {
                self.client_answer(c, attempt, answer);
                Ok(())
            }
            Ev::ClientNext(c) => {
                self.client_next(c);
                Ok(())
            }
            Ev::ClientTimeout(c, attempt) => {
                if let Some(p) = &self.clients[c].pending
                    && p.attempt == attempt
                {
                    self.client_retry(c, None);
                }
                Ok(())
            }
            Ev::Fault => {
                if self.faults_on {
                    self.inject_fault();
                    let max = (self.opts.max_fault_gap.as_millis() as u64).max(11);
                    let d = self.rng.random_range(10..max) * MS;
                    self.schedule(d, Ev::Fault);
                }
                Ok(())
            }
            Ev::Heal(epoch) => {
                if epoch == self.partition_epoch {
                    self.blocked.clear();
                    self.log("partition healed".into());
                }
                Ok(())
            }
            Ev::ConnectionLost(id, peer) => {
                let node = &self.nodes[&id];
                if node.replica.is_none() {
                    return Ok(());
                }
                if node.busy_until > self.now {
                    let t = node.busy_until - self.now;
                    self.schedule(t, Ev::ConnectionLost(id, peer));
                    return Ok(());
                }
                self.note_step(id);
                let local = self.local(id);
                self.log(format!("n{id}: connection to n{peer} lost"));
                self.replica(id).connection_lost(peer, local);
                self.after_input(id)
            }
            Ev::Restart(id) => {
                if self.nodes[&id].replica.is_none() {
                    self.start_node(id);
                }
                Ok(())
            }
        }
    }

    /// A `Ready` is carried out: back at the top of the loop, a snapshot
    /// stage that finished meanwhile is handled, and what was stepped
    /// meanwhile leaves in the next `Ready`, taken at once.
    fn back_to_loop(&mut self, id: NodeId) -> Outcome {
        self.check_leader_and_lease(id)?;
        let node = self.nodes.get_mut(&id).unwrap();
        let stepped = std::mem::take(&mut node.stepped_while_busy);
        let stage_done = node.snapshot_job.as_ref().is_some_and(|j| j.stage_done);
        if stage_done {
            self.snapshot_stage_done(id);
        }
        if stage_done || stepped {
            return self.after_input(id);
        }
        Ok(())
    }

    fn local(&self, id: NodeId) -> Instant {
        self.nodes[&id].clock.local(self.now)
    }

    fn replica(&mut self, id: NodeId) -> &mut Replica<Sim> {
        self.nodes
            .get_mut(&id)
            .unwrap()
            .replica
            .as_mut()
            .expect("running")
    }

    /// After every input: safety checks, then hand the ready batch to the disk.
    fn after_input(&mut self, id: NodeId) -> Outcome {
        self.check_leader_and_lease(id)?;
        let node = &self.nodes[&id];
        if node.busy_until > self.now {
            return Ok(());
        }
        if node.in_flight.is_some() || node.decoding.is_some() {
            // Heartbeats and their answers leave at once, as the node loop
            // sends them between the steps it takes during a sync.
            for m in self.replica(id).take_heartbeats() {
                self.stats.heartbeats_during_sync += 1;
                self.send(m);
            }
            return Ok(());
        }
        let mut ready = self.replica(id).ready();
        for ev in &ready.events {
            self.on_event(id, ev)?;
        }
        let mut waited = 0;
        if ready.must_sync && ready.snapshot.is_some() {
            // The leader's snapshot replaces the snapshot files: the loop
            // first waits for its own snapshot under way, stepping inputs meanwhile
            // as during the sync that follows (the wait is part of `in_flight`).
            waited = self.finish_snapshot_job(id);
        }
        if !ready.must_sync && ready.hard_state.is_some() {
            self.nodes.get_mut(&id).unwrap().unsynced_hard_state = ready.hard_state.take();
        }
        if ready.must_sync {
            let delay = waited + self.sync_delay(id);
            let inc = self.nodes[&id].incarnation;
            let node = self.nodes.get_mut(&id).unwrap();
            node.in_flight = Some(ready);
            self.schedule(delay, Ev::FsyncDone(id, inc));
            Ok(())
        } else {
            self.complete_ready(id, ready)
        }
    }

    /// How long an fsync takes: mostly short, sometimes several ms, and,
    /// among the faults, rarely longer than the lease (a disk stalled behind
    /// writeback, as seen under a snapshot of 130 MB), which heartbeats must
    /// ride out.
    fn sync_delay(&mut self, id: NodeId) -> u64 {
        if let Some(t) = self.nodes[&id].sync_time {
            return t;
        }
        if self.faults_on && self.rng.random_bool(0.005) {
            self.rng.random_range(100..600) * MS
        } else if self.rng.random_bool(0.02) {
            self.rng.random_range(5..30) * MS
        } else {
            self.rng.random_range(50..2000) * 1_000
        }
    }

    fn on_event(&mut self, id: NodeId, ev: &Event) -> Outcome {
        match ev {
            Event::LeaderElected {
                term,
                wait_for_old_lease,
            } => {
                self.stats.elections += 1;
                self.log(format!(
                    "n{id} LEADER of term {term} (waits {wait_for_old_lease:?})"
                ));
                self.check_leader_completeness(id, *term)?;
            }
            Event::RoleChanged { role, term, leader } => {
                self.log(format!(
                    "n{id} {} term {term} leader {leader:?}",
                    role.as_str()
                ));
            }
            Event::SnapshotInstalled { last } => {
                self.stats.snapshots += 1;
                self.log(format!("n{id} installs snapshot {last:?}"));
            }
            other => self.log(format!("n{id} {other:?}")),
        }
        Ok(())
    }

    /// The disk finished: durable state, then messages, then the replica
    /// applies and answers, exactly as the node loop does.
    fn complete_ready(&mut self, id: NodeId, mut ready: Ready) -> Outcome {
        let applied = Applied::take(&mut ready);
        let node = self.nodes.get_mut(&id).unwrap();
        if ready.must_sync {
            // The fsync also makes an earlier unsynced hard state durable.
            if let Some(hs) = node.unsynced_hard_state.take() {
                node.disk.hard_state = hs;
            }
        }
        node.disk
            .write(ready.hard_state, ready.snapshot.as_ref(), &ready.entries);
        self.replica(id).persisted(ready.durable);
        for m in ready.messages {
            self.send(m);
        }
        for e in &applied.committed {
            self.check_commit(id, e)?;
        }
        if applied.snapshot.is_some() {
            // Decoded off the loop; the node steps inputs meanwhile.
            let delay = self.snapshot_stage_delay();
            let inc = self.nodes[&id].incarnation;
            self.nodes.get_mut(&id).unwrap().decoding = Some(applied);
            self.schedule(delay, Ev::Decoded(id, inc));
            return Ok(());
        }
        self.apply_ready(id, applied)
    }

    /// The rest of a `Ready`, once persisted and sent: the replica restores,
    /// applies and answers, the storage adopts a written snapshot, and a
    /// local snapshot starts when due.
    fn apply_ready(&mut self, id: NodeId, applied: Applied) -> Outcome {
        let local = self.local(id);
        if let Err(e) = self.replica(id).advance(applied, local) {
            panic!("n{id}: {e}");
        }
        self.check_cluster_time(id)?;
        self.check_replica_state(id)?;
        self.deliver(id);
        if let Some(d) = self.diverged.pop() {
            return violation(Check::ReplicaState, d);
        }
        self.adopt_snapshot(id);
        let idle = self.nodes[&id].snapshot_job.is_none();
        if idle && self.replica(id).snapshot_due() {
            self.begin_snapshot(id);
        }
        Ok(())
    }

    /// A syncing node steps an input into its core (counted for the stats).
    fn note_step(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).unwrap();
        if node.in_flight.is_some() || node.decoding.is_some() {
            node.stepped_while_busy = true;
            self.stats.steps_during_sync += 1;
        }
    }

    /// How long a snapshot stage's thread takes: mostly short, sometimes
    /// long enough for installs, crashes and many applies to come between.
    fn snapshot_stage_delay(&mut self) -> u64 {
        if self.rng.random_bool(0.1) {
            self.rng.random_range(50..800) * MS
        } else {
            self.rng.random_range(1..30) * MS
        }
    }

    /// Starts a local snapshot as the node loop does: the applied index and
    /// an O(1) copy of the state machine, encoded on another thread.
    fn begin_snapshot(&mut self, id: NodeId) {
        let (index, sm) = self.replica(id).begin_snapshot();
        let delay = self.snapshot_stage_delay();
        let node = self.nodes.get_mut(&id).unwrap();
        node.snapshot_jobs += 1;
        let job = node.snapshot_jobs;
        node.snapshot_job = Some(SnapshotJob {
            id: job,
            stage: SnapshotStage::Encoding { index, sm },
            stage_done: false,
            due: self.now + delay,
        });
        let inc = node.incarnation;
        self.schedule(delay, Ev::SnapshotStage(id, inc, job));
    }

    /// The current snapshot stage's thread finished: compact the core with
    /// the encoding (`finish_snapshot`) and write the file, or mark the
    /// written file for adoption.
    fn snapshot_stage_done(&mut self, id: NodeId) {
        let Some(job) = self.nodes.get_mut(&id).unwrap().snapshot_job.take() else {
            return;
        };
        let stage = match job.stage {
            SnapshotStage::Encoding { index, sm } => {
                let local = self.local(id);
                match self
                    .replica(id)
                    .finish_snapshot(index, sm.snapshot(), local)
                {
                    None => {
                        self.stats.stale_snapshots += 1;
                        self.log(format!("n{id} drops its snapshot at {index}: stale"));
                        return;
                    }
                    Some(snap) => {
                        self.stats.local_snapshots += 1;
                        self.log(format!("n{id} compacts its log at {index}"));
                        let delay = self.snapshot_stage_delay();
                        let node = self.nodes.get_mut(&id).unwrap();
                        let inc = node.incarnation;
                        self.schedule(delay, Ev::SnapshotStage(id, inc, job.id));
                        (SnapshotStage::Writing(snap), self.now + delay)
                    }
                }
            }
            SnapshotStage::Writing(snap) => (SnapshotStage::Written(snap), self.now),
            SnapshotStage::Written(snap) => (SnapshotStage::Written(snap), self.now),
        };
        self.nodes.get_mut(&id).unwrap().snapshot_job = Some(SnapshotJob {
            id: job.id,
            stage: stage.0,
            stage_done: false,
            due: stage.1,
        });
    }

    /// After a `Ready`: the storage adopts a written snapshot file, unless
    /// the leader's newer one was installed meanwhile (`Storage::adopt_snapshot`).
    fn adopt_snapshot(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).unwrap();
        if !matches!(
            node.snapshot_job,
            Some(SnapshotJob {
                stage: SnapshotStage::Written(_),
                ..
            })
        ) {
            return;
        }
        let Some(SnapshotJob {
            stage: SnapshotStage::Written(snap),
            ..
        }) = node.snapshot_job.take()
        else {
            return;
        };
        let newer = node
            .disk
            .snapshot
            .as_ref()
            .is_some_and(|s| s.meta.last.index >= snap.meta.last.index);
        if !newer {
            node.disk.save_snapshot(snap);
        }
    }

    /// Before persisting a leader's snapshot: waits for the local snapshot
    /// under way to finish every stage and be adopted, as the node loop's
    /// `finish_snapshot_job` does (it steps nothing meanwhile). Returns how
    /// long that took.
    fn finish_snapshot_job(&mut self, id: NodeId) -> u64 {
        let mut waited = 0;
        while let Some(job) = &self.nodes[&id].snapshot_job {
            if matches!(job.stage, SnapshotStage::Written(_)) {
                break;
            }
            waited += job.due.saturating_sub(self.now + waited);
            self.snapshot_stage_done(id);
            if let Some(j) = self.nodes.get_mut(&id).unwrap().snapshot_job.as_mut() {
                // Its stage event, scheduled at `due`, is now ignored.
                j.id = u64::MAX;
            }
        }
        self.adopt_snapshot(id);
        waited
    }

    /// The node snapshots its state machine at its applied index and
    /// compacts its log (when the replica says it is due, or when a script
    /// says).
    fn snapshot_now(&mut self, id: NodeId) {
        let snap = self.replica(id).take_snapshot();
        self.nodes.get_mut(&id).unwrap().disk.save_snapshot(snap);
    }

    /// State machine safety: every node applies the same entry at an index.
    /// The first time an index commits, its cluster time is noted.
    fn check_commit(&mut self, id: NodeId, e: &Entry) -> Outcome {
        match self.committed.get(&e.index().0) {
            Some((t, p)) if *t != e.term() || *p != e.payload => {
                return violation(
                    Check::StateMachineSafety,
                    format!(
                        "n{id} applies {:?} at index {}, another node applied term {t} {:?}",
                        e.payload,
                        e.index(),
                        p
                    ),
                );
            }
            Some(_) => {}
            None => {
                self.committed
                    .insert(e.index().0, (e.term(), e.payload.clone()));
                let bound = self.leaders.keys().max().copied().unwrap_or(Term(0));
                self.commit_term_bound.insert(e.index().0, bound);
                if let Payload::Command(bytes) = &e.payload {
                    self.note_cluster_time(e.index().0, bytes);
                }
            }
        }
        Ok(())
    }

    /// Cluster time after the command entry at `index`: the largest stamp so
    /// far (an index commits for the first time only after every index
    /// before it did, on some node).
    fn note_cluster_time(&mut self, index: u64, bytes: &[u8]) {
        let proposal = pb::Proposal::decode(bytes).expect("the replica's proposal");
        let t = self.cluster_time_at(index).max(proposal.stamp_ms);
        self.cluster_time.insert(index, t);
        if let Some(s) = proposal.session.filter(|s| s.client_id != 0) {
            self.first_proposed.entry((s.client_id, s.seq)).or_insert(t);
        }
    }

    /// Cluster time once everything up to `index` is applied.
    fn cluster_time_at(&self, index: u64) -> u64 {
        self.cluster_time
            .range(..=index)
            .next_back()
            .map_or(0, |(_, t)| *t)
    }

    /// Every state the replica reached since the last look (each applied
    /// entry, each restore) keeps the state machine's invariants and hashes
    /// the same as every other replica's at the same applied index.
    fn check_replica_state(&mut self, id: NodeId) -> Outcome {
        for a in self.replica(id).take_audit() {
            if let Some(broken) = a.broken {
                return violation(
                    Check::ReplicaState,
                    format!(
                        "n{id} breaks a state machine invariant at index {}: {broken}",
                        a.index
                    ),
                );
            }
            match self.state_hashes.get(&a.index) {
                None => {
                    self.state_hashes.insert(a.index, (id, a.hash));
                }
                Some(&(first, hash)) => {
                    self.stats.hash_comparisons += 1;
                    if a.restored {
                        self.stats.restored_hash_comparisons += 1;
                    }
                    if hash != a.hash {
                        let how = if a.restored {
                            "restored from a snapshot"
                        } else {
                            "applied"
                        };
                        return violation(
                            Check::ReplicaState,
                            format!(
                                "n{id} {how} a state hashing to {:016x} at index {}, n{first} had {hash:016x}",
                                a.hash, a.index
                            ),
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// The node's cluster time is the log's, and never ahead of real time
    /// by more than the drift bound (a key never expires early beyond it).
    fn check_cluster_time(&self, id: NodeId) -> Outcome {
        let replica = self.nodes[&id].replica.as_ref().expect("running");
        let (t, applied) = (replica.state_machine().time_ms(), replica.applied());
        let expected = self.cluster_time_at(applied);
        if t != expected {
            return violation(
                Check::StateMachineSafety,
                format!("n{id} has cluster time {t} at index {applied}, the log says {expected}"),
            );
        }
        let rho = self.cfg_template.max_clock_drift;
        let bound = (self.now as f64 / MS as f64 * (1.0 + rho)).ceil() as u64 + 1;
        if t > bound && !self.opts.drift_beyond_bound {
            return violation(
                Check::ClusterTime,
                format!(
                    "n{id} reads cluster time {t} ms at real time {:.3} ms: ahead by more than the drift bound",
                    self.now as f64 / MS as f64
                ),
            );
        }
        Ok(())
    }

    // ---------------------------------------------------------------- network

    fn send(&mut self, m: Message) {
        if self.blocked.contains(&(m.from, m.to))
            || self.cut_by_script(&m)
            || self.rng.random_bool(self.loss)
        {
            return;
        }
        let copies = if self.rng.random_bool(self.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let d = self.net_delay();
            self.schedule(d, Ev::Deliver(m.clone()));
        }
    }

    /// A script's rule drops a message both when it is sent and when it
    /// arrives: cutting a link also loses what was in flight on it.
    fn cut_by_script(&self, m: &Message) -> bool {
        self.rules.iter().any(|r| r.drops(m))
    }

    fn net_delay(&mut self) -> u64 {
        if self.faults_on && self.rng.random_bool(0.03) {
            self.rng.random_range(20..150) * MS
        } else {
            self.rng.random_range(100..3000) * 1_000
        }
    }

    // ---------------------------------------------------------------- faults

    fn current_leader(&self) -> Option<NodeId> {
        self.nodes
            .values()
            .filter(|n| n.raft().is_some_and(|r| r.role() == Role::Leader))
            .max_by_key(|n| n.raft().unwrap().term())
            .map(|n| n.id)
    }

    fn inject_fault(&mut self) {
        self.stats.faults += 1;
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        let pick = |rng: &mut StdRng| ids[rng.random_range(0..ids.len())];
        let leader = self.current_leader();
        match self.rng.random_range(0..100) {
            0..=19 => {
                // Partition: a random side, symmetric or one-way.
                let side: BTreeSet<NodeId> = ids
                    .iter()
                    .copied()
                    .filter(|_| self.rng.random_bool(0.4))
                    .collect();
                let one_way = self.rng.random_bool(0.3);
                self.blocked.clear();
                for a in &ids {
                    for b in &ids {
                        if side.contains(a) && !side.contains(b) {
                            self.blocked.insert((*a, *b));
                            if !one_way {
                                self.blocked.insert((*b, *a));
                            }
                        }
                    }
                }
                self.partition_epoch += 1;
                let d = self.rng.random_range(100..1200) * MS;
                self.log(format!(
                    "PARTITION {side:?} one_way={one_way} for {}ms",
                    d / MS
                ));
                self.schedule(d, Ev::Heal(self.partition_epoch));
            }
            20..=29 => {
                // Isolate the leader (or a random node) from everyone.
                let victim = leader.unwrap_or_else(|| pick(&mut self.rng));
                self.blocked.clear();
                for b in &ids {
                    if *b != victim {
                        self.blocked.insert((victim, *b));
                        self.blocked.insert((*b, victim));
                    }
                }
                self.partition_epoch += 1;
                let d = self.rng.random_range(200..1000) * MS;
                self.log(format!("ISOLATE n{victim} for {}ms", d / MS));
                self.schedule(d, Ev::Heal(self.partition_epoch));
            }
            30..=44 => {
                let victim = if self.rng.random_bool(0.5) {
                    leader.unwrap_or_else(|| pick(&mut self.rng))
                } else {
                    pick(&mut self.rng)
                };
                if self.crash(victim, true) {
                    // Quick restarts matter: a restarted voter has forgotten
                    // which leader it heard from, and votes at once.
                    let d = if self.rng.random_bool(0.5) {
                        self.rng.random_range(5..80) * MS
                    } else {
                        self.rng.random_range(50..600) * MS
                    };
                    self.schedule(d, Ev::Restart(victim));
                }
            }
            45..=59 => {
                // Pause (SIGSTOP): the process stops, its clock does not.
                let victim = if self.rng.random_bool(0.6) {
                    leader.unwrap_or_else(|| pick(&mut self.rng))
                } else {
                    pick(&mut self.rng)
                };
                if self.nodes[&victim].replica.is_some() {
                    let d = self.rng.random_range(100..900) * MS;
                    let node = self.nodes.get_mut(&victim).unwrap();
                    node.busy_until = node.busy_until.max(self.now + d);
                    self.log(format!("PAUSE n{victim} for {}ms", d / MS));
                }
            }
            60..=69 => {
                self.loss = [0.0, 0.01, 0.05, 0.2][self.rng.random_range(0..4)];
                self.duplicate = [0.0, 0.02, 0.1][self.rng.random_range(0..3)];
                self.log(format!("NETWORK loss={} dup={}", self.loss, self.duplicate));
            }
            70..=79 => {
                if let Some(l) = leader {
                    let to = pick(&mut self.rng);
                    let local = self.local(l);
                    self.log(format!("TRANSFER n{l} -> n{to}"));
                    self.replica(l).transfer_leadership(Some(to), (), local);
                    self.deliver(l);
                    let _ = self.after_input(l);
                }
            }
            80..=89 => self.membership_fault(leader),
            _ if self.rng.random_bool(0.3) => {
                // Reset the connections between two live nodes (a proxy's
                // or a middlebox's reset): both ends see it.
                let (a, b) = (
                    leader.unwrap_or_else(|| pick(&mut self.rng)),
                    pick(&mut self.rng),
                );
                if a != b {
                    self.log(format!("RESET connections n{a} <-> n{b}"));
                    self.reset_connection(a, b);
                    self.reset_connection(b, a);
                }
            }
            _ => {
                // Cut a single link, one way or both: one node stops hearing
                // the leader while the others still do.
                let (a, b) = (
                    leader.unwrap_or_else(|| pick(&mut self.rng)),
                    pick(&mut self.rng),
                );
                if a != b {
                    self.blocked.insert((a, b));
                    if self.rng.random_bool(0.5) {
                        self.blocked.insert((b, a));
                    }
                    self.log(format!("CUT link n{a} -> n{b}"));
                }
            }
        }
    }

    fn membership_fault(&mut self, leader: Option<NodeId>) {
        let Some(l) = leader else { return };
        let m = self.replica(l).raft().membership().clone();
        let all: Vec<NodeId> = self.nodes.keys().copied().collect();
        let change = if let Some(learner) = m.learners.iter().next() {
            ConfChange::Promote(*learner)
        } else if let Some(spare) = all.iter().find(|id| !m.contains(**id)) {
            if m.voters.len() >= 3 && self.rng.random_bool(0.5) {
                let v: Vec<NodeId> = m.voters.iter().copied().collect();
                ConfChange::Remove(v[self.rng.random_range(0..v.len())])
            } else {
                ConfChange::AddLearner(*spare)
            }
        } else {
            let v: Vec<NodeId> = m.voters.iter().copied().collect();
            ConfChange::Remove(v[self.rng.random_range(0..v.len())])
        };
        self.propose_change(l, change);
    }

    /// `l` proposes a membership change (a random fault's or a script's).
    fn propose_change(&mut self, l: NodeId, change: ConfChange) {
        let local = self.local(l);
        self.log(format!("MEMBERSHIP n{l} {change:?}"));
        self.replica(l).propose_change(change, None, None, local);
        self.deliver(l);
        let _ = self.after_input(l);
    }

    fn heal_everything(&mut self) {
        self.faults_on = false;
        self.blocked.clear();
        self.partition_epoch += 1;
        self.loss = 0.0;
        self.duplicate = 0.0;
        self.log("FAULTS STOP: network healed, crashed nodes restart".into());
        let down: Vec<NodeId> = self
            .nodes
            .values()
            .filter(|n| n.replica.is_none())
            .map(|n| n.id)
            .collect();
        for id in down {
            self.start_node(id);
        }
    }

    // ---------------------------------------------------------------- checks

    fn check_leader_and_lease(&mut self, id: NodeId) -> Outcome {
        let local = self.local(id);
        let now = self.now;
        let node = &self.nodes[&id];
        let Some(raft) = node.raft() else {
            return Ok(());
        };
        if raft.role() == Role::Leader {
            let term = raft.term();
            if let Some(other) = self.leaders.insert(term, id)
                && other != id
            {
                return violation(
                    Check::ElectionSafety,
                    format!("n{other} and n{id} both lead term {term}"),
                );
            }
        }
        let expiry = raft
            .lease_remaining(local)
            .map(|rem| node.clock.real(local + rem));
        let overlap = expiry.and_then(|exp| {
            let other = self.nodes.values().find(|o| {
                o.id != id && o.replica.is_some() && o.lease_real_expiry.is_some_and(|e| e > now)
            })?;
            Some(format!(
                "n{id} holds a lease until {:.3}ms while n{} holds one until {:.3}ms",
                exp as f64 / MS as f64,
                other.id,
                other.lease_real_expiry.unwrap() as f64 / MS as f64
            ))
        });
        self.nodes.get_mut(&id).unwrap().lease_real_expiry = expiry;
        match overlap {
            Some(detail) if self.opts.lease_overlap_check => violation(Check::LeaseSafety, detail),
            _ => Ok(()),
        }
    }

    /// Every entry committed in an earlier term is in the new leader's log.
    fn check_leader_completeness(&self, id: NodeId, term: Term) -> Outcome {
        let disk = &self.nodes[&id].disk;
        let first = disk.first_entry_index();
        for (idx, (t, _)) in self.committed.range(first.0..) {
            if self.commit_term_bound[idx] >= term {
                continue;
            }
            match disk.term_at(LogIndex(*idx)) {
                Some(have) if have == *t => {}
                other => {
                    return violation(
                        Check::LeaderCompleteness,
                        format!(
                            "n{id} leads term {term} but has {other:?} at committed index {idx} (term {t})"
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    /// Log matching: if two logs hold an entry with the same index and term,
    /// they are identical up to it.
    fn check_log_matching(&self) -> Outcome {
        let nodes: Vec<&Node> = self.nodes.values().collect();
        for (i, a) in nodes.iter().enumerate() {
            for b in &nodes[i + 1..] {
                let bmap: HashMap<u64, &Entry> =
                    b.disk.entries.iter().map(|e| (e.index().0, e)).collect();
                let mut matched = false;
                for e in a.disk.entries.iter().rev() {
                    if let Some(other) = bmap.get(&e.index().0) {
                        if other.term() == e.term() {
                            matched = true;
                        }
                        if matched && (other.term() != e.term() || other.payload != e.payload) {
                            return violation(
                                Check::LogMatching,
                                format!(
                                    "n{} and n{} differ at index {} below a matching entry",
                                    a.id,
                                    b.id,
                                    e.index()
                                ),
                            );
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
