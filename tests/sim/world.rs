//! The deterministic simulator: whole clusters of the real `raft` core plus
//! a small KV state machine in one thread, with virtual time, a seeded PRNG,
//! drifting clocks, an adversarial network, crashes, pauses, membership
//! changes and leadership transfers. Every step is checked for safety.

use bytes::Bytes;
use raftkv::raft::{
    Broken, ConfChange, Config, Entry, Event, HardState, Instant, LogIndex, Membership, Message,
    NodeId, Payload, Persisted, ProposeError, Raft, Ready, Role, Snapshot, Term,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::time::Duration;

use crate::kv::{Cmd, Kv, Reply, Request};
use crate::linearizability::{Op, OpKind};

#[path = "script.rs"]
pub mod script;
use script::Rule;

const MS: u64 = 1_000_000;
const KEYS: [&str; 3] = ["a", "b", "c"];

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
    /// The core (or the simulator) panicked, e.g. on truncating a committed entry.
    Panic,
    Liveness,
    Linearizability,
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
            Check::Panic => "panic",
            Check::Liveness => "liveness",
            Check::Linearizability => "linearizability",
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
    pub events: u64,
    pub faults: usize,
    pub elections: usize,
    pub snapshots: usize,
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
    raft: Option<Raft>,
    clock: Clock,
    disk: Disk,
    kv: Kv,
    incarnation: u64,
    busy_until: u64,
    /// The ready batch whose fsync is under way.
    in_flight: Option<Ready>,
    /// A hard state written without an fsync (`Ready::must_sync` false: only
    /// the commit index changed). The next synced write makes it durable; a
    /// crash before that keeps it or loses it, at random.
    unsynced_hard_state: Option<HardState>,
    /// Proposals waiting for their entry: index -> (term, client, attempt).
    proposals: HashMap<u64, (Term, usize, u64)>,
    reads: HashMap<u64, (usize, u64, String)>,
    lease_real_expiry: Option<u64>,
}

#[derive(Clone, Debug)]
enum ClientMsg {
    Write {
        client: usize,
        attempt: u64,
        req: Request,
    },
    Read {
        client: usize,
        attempt: u64,
        key: String,
    },
}

/// What a client asks for.
#[derive(Clone, Debug)]
enum Call {
    Get(String),
    Write(Cmd),
}

#[derive(Clone, Debug)]
enum Answer {
    Written(Reply),
    Read(Option<String>),
    Redirect(Option<NodeId>),
}

enum Ev {
    Deliver(Message),
    ToNode(NodeId, ClientMsg),
    ToClient(usize, u64, Answer),
    Tick(NodeId, u64),
    FsyncDone(NodeId, u64),
    ClientNext(usize),
    ClientTimeout(usize, u64),
    Fault,
    Heal(u64),
    Restart(NodeId),
}

struct PendingOp {
    op_index: usize,
    attempt: u64,
    msg: ClientMsg,
    target: NodeId,
}

struct Client {
    seq: u64,
    /// Attempts are numbered across all operations, so a late answer to an
    /// earlier operation can never be taken for the current one's.
    attempts: u64,
    pending: Option<PendingOp>,
    leader_guess: Option<NodeId>,
    counter: u64,
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
    // checks
    leaders: HashMap<Term, NodeId>,
    committed: BTreeMap<u64, (Term, Payload)>,
    /// For each committed index: the highest term any leader had when it was
    /// first applied (its commit term is at most that).
    commit_term_bound: BTreeMap<u64, Term>,
    trace: VecDeque<String>,
    stats: Stats,
    next_read_id: u64,
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
            raft: None,
            clock,
            disk,
            kv: Kv::default(),
            incarnation: 0,
            busy_until: 0,
            in_flight: None,
            unsynced_hard_state: None,
            proposals: HashMap::new(),
            reads: HashMap::new(),
            lease_real_expiry: None,
        }
    }
}

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
        let clients = (0..3)
            .map(|_| Client {
                seq: 0,
                attempts: 0,
                pending: None,
                leader_guess: None,
                counter: 0,
            })
            .collect();
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
            blocked: BTreeSet::new(),
            partition_epoch: 0,
            loss: 0.0,
            duplicate: 0.0,
            rules: Vec::new(),
            held: BTreeSet::new(),
            scripted_clients: false,
            leaders: HashMap::new(),
            committed: BTreeMap::new(),
            commit_term_bound: BTreeMap::new(),
            trace: VecDeque::new(),
            stats: Stats::default(),
            next_read_id: 1,
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
        self.stats.ops = self.history.len();
        Ok(self.stats.clone())
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
            .find(|n| n.raft.as_ref().is_some_and(|r| r.role() == Role::Leader));
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
        node.kv = node
            .disk
            .snapshot
            .as_ref()
            .map_or_else(Kv::default, |s| Kv::restore(&s.data));
        node.raft = Some(Raft::new(cfg, persisted, node.clock.local(now)));
        node.busy_until = now;
        node.in_flight = None;
        node.proposals.clear();
        node.reads.clear();
        node.lease_real_expiry = None;
        self.log(format!("n{id} starts (incarnation {inc})"));
        self.schedule(10 * MS, Ev::Tick(id, inc));
    }

    /// Stops a running node; what it had not fsynced is lost. False if it
    /// was already down.
    fn crash(&mut self, id: NodeId) -> bool {
        let flushed_anyway = self.rng.random_bool(0.5);
        let node = self.nodes.get_mut(&id).expect("node");
        if node.raft.take().is_none() {
            return false;
        }
        if let Some(hs) = node.unsynced_hard_state.take() {
            if flushed_anyway {
                node.disk.hard_state = hs;
            }
        }
        node.in_flight = None;
        node.lease_real_expiry = None;
        node.busy_until = 0;
        self.log(format!("n{id} CRASHES (unsynced writes lost)"));
        true
    }

    // ---------------------------------------------------------------- events

    fn handle(&mut self, ev: Ev) -> Outcome {
        match ev {
            Ev::Tick(id, inc) => {
                let node = &self.nodes[&id];
                if node.incarnation != inc || node.raft.is_none() {
                    return Ok(());
                }
                self.schedule(10 * MS, Ev::Tick(id, inc));
                // A paused or fsyncing node runs no timers; its next tick comes
                // later. A held timer (a script's) does not run at all.
                if self.nodes[&id].busy_until > self.now || self.held.contains(&id) {
                    return Ok(());
                }
                let local = self.local(id);
                self.raft(id).tick(local);
                self.after_input(id)
            }
            Ev::Deliver(msg) => {
                let to = msg.to;
                if self.held_by_script(&msg) {
                    self.schedule(MS, Ev::Deliver(msg));
                    return Ok(());
                }
                if self.nodes[&to].raft.is_none() || self.cut_by_script(&msg) {
                    return Ok(());
                }
                if self.nodes[&to].busy_until > self.now {
                    let t = self.nodes[&to].busy_until - self.now;
                    self.schedule(t, Ev::Deliver(msg));
                    return Ok(());
                }
                let local = self.local(to);
                self.raft(to).step(msg, local);
                self.after_input(to)
            }
            Ev::FsyncDone(id, inc) => {
                if self.nodes[&id].incarnation != inc || self.nodes[&id].raft.is_none() {
                    return Ok(());
                }
                let p = self.nodes.get_mut(&id).unwrap().in_flight.take();
                if let Some(p) = p {
                    self.complete_ready(id, p)?;
                }
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
            Ev::Restart(id) => {
                if self.nodes[&id].raft.is_none() {
                    self.start_node(id);
                }
                Ok(())
            }
        }
    }

    fn local(&self, id: NodeId) -> Instant {
        self.nodes[&id].clock.local(self.now)
    }

    fn raft(&mut self, id: NodeId) -> &mut Raft {
        self.nodes
            .get_mut(&id)
            .unwrap()
            .raft
            .as_mut()
            .expect("running")
    }

    /// After every input: safety checks, then hand the ready batch to the disk.
    fn after_input(&mut self, id: NodeId) -> Outcome {
        self.check_leader_and_lease(id)?;
        if self.nodes[&id].in_flight.is_some() || self.nodes[&id].busy_until > self.now {
            return Ok(());
        }
        let mut ready = self.raft(id).ready();
        for ev in &ready.events {
            self.on_event(id, ev)?;
        }
        if !ready.must_sync && ready.hard_state.is_some() {
            self.nodes.get_mut(&id).unwrap().unsynced_hard_state = ready.hard_state.take();
        }
        if ready.must_sync {
            let delay = if self.rng.random_bool(0.02) {
                self.rng.random_range(5..30) * MS
            } else {
                self.rng.random_range(50..2000) * 1_000
            };
            let inc = self.nodes[&id].incarnation;
            let node = self.nodes.get_mut(&id).unwrap();
            node.in_flight = Some(ready);
            node.busy_until = self.now + delay;
            self.schedule(delay, Ev::FsyncDone(id, inc));
            Ok(())
        } else {
            self.complete_ready(id, ready)
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

    /// The disk finished: durable state, then messages, then apply.
    fn complete_ready(&mut self, id: NodeId, ready: Ready) -> Outcome {
        let now = self.now;
        let node = self.nodes.get_mut(&id).unwrap();
        if ready.must_sync {
            // The fsync also makes an earlier unsynced hard state durable.
            if let Some(hs) = node.unsynced_hard_state.take() {
                node.disk.hard_state = hs;
            }
        }
        node.disk
            .write(ready.hard_state, ready.snapshot.as_ref(), &ready.entries);
        node.busy_until = now;
        if let Some(s) = &ready.snapshot {
            node.kv = Kv::restore(&s.data);
        }
        for m in ready.messages {
            self.send(m);
        }
        for e in &ready.committed {
            self.apply(id, e)?;
        }
        for r in &ready.reads {
            let node = self.nodes.get_mut(&id).unwrap();
            if let Some((client, attempt, key)) = node.reads.remove(&r.id) {
                let value = node.kv.data.get(&key).cloned();
                self.reply(client, attempt, Answer::Read(value));
            }
        }
        for r in &ready.failed_reads {
            if let Some((client, attempt, _)) = self.nodes.get_mut(&id).unwrap().reads.remove(r) {
                self.reply(client, attempt, Answer::Redirect(None));
            }
        }
        if ready.snapshot_due {
            self.snapshot_now(id);
        }
        Ok(())
    }

    /// The node snapshots its state machine at its applied index and
    /// compacts its log (on `Ready::snapshot_due`, or when a script says).
    fn snapshot_now(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).unwrap();
        let data = Bytes::from(node.kv.snapshot());
        let applied = node
            .raft
            .as_ref()
            .unwrap()
            .status(Instant::default())
            .applied;
        let snap = node.raft.as_mut().unwrap().compact(applied, data);
        node.disk.save_snapshot(snap);
    }

    fn apply(&mut self, id: NodeId, e: &Entry) -> Outcome {
        // State machine safety: every node applies the same entry at an index.
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
            }
        }
        let node = self.nodes.get_mut(&id).unwrap();
        if let Payload::Command(bytes) = &e.payload {
            let (_, _, reply) = node.kv.apply(bytes);
            if let Some((term, client, attempt)) = node.proposals.remove(&e.index().0) {
                if term == e.term() {
                    self.reply(client, attempt, Answer::Written(reply));
                }
            }
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

    // ---------------------------------------------------------------- clients

    fn client_next(&mut self, c: usize) {
        if !self.clients_on || self.clients[c].pending.is_some() {
            return;
        }
        let key = KEYS[self.rng.random_range(0..KEYS.len())].to_string();
        let roll = self.rng.random_range(0..10);
        let call = if roll < 5 {
            Call::Get(key)
        } else if roll < 8 {
            Call::Write(Cmd::Incr(key))
        } else {
            let client = &mut self.clients[c];
            client.counter += 1;
            // Values stay integers so INCR on them is always defined.
            let value = (c as u64 + 1) * 1_000_000 + client.counter;
            Call::Write(Cmd::Set(key, value.to_string()))
        };
        let target = self.clients[c]
            .leader_guess
            .unwrap_or(NodeId(self.rng.random_range(0..self.nodes.len() as u64)));
        self.call(c, target, call);
    }

    /// Client `c` starts an operation: into the history, then to `target`.
    fn call(&mut self, c: usize, target: NodeId, call: Call) {
        let client = &mut self.clients[c];
        let (key, kind, msg) = match call {
            Call::Get(key) => (
                key.clone(),
                OpKind::Get { result: None },
                ClientMsg::Read {
                    client: c,
                    attempt: 0,
                    key,
                },
            ),
            Call::Write(cmd) => {
                client.seq += 1;
                let (key, kind) = match &cmd {
                    Cmd::Incr(k) => (k.clone(), OpKind::Incr { result: None }),
                    Cmd::Set(k, v) => (k.clone(), OpKind::Set { value: v.clone() }),
                };
                let req = Request {
                    client: c as u64 + 1,
                    seq: client.seq,
                    cmd,
                };
                let msg = ClientMsg::Write {
                    client: c,
                    attempt: 0,
                    req,
                };
                (key, kind, msg)
            }
        };
        self.history.push(Op {
            client: c as u64,
            key,
            kind,
            call: self.now,
            ret: None,
        });
        let op_index = self.history.len() - 1;
        client.attempts += 1;
        client.pending = Some(PendingOp {
            op_index,
            attempt: client.attempts,
            msg,
            target,
        });
        self.client_send(c);
    }

    fn client_send(&mut self, c: usize) {
        let p = self.clients[c].pending.as_mut().expect("pending");
        let attempt = p.attempt;
        let msg = match &mut p.msg {
            ClientMsg::Write { attempt: a, .. } | ClientMsg::Read { attempt: a, .. } => {
                *a = attempt;
                p.msg.clone()
            }
        };
        let target = p.target;
        let d = self.net_delay();
        self.schedule(d, Ev::ToNode(target, msg));
        if !self.scripted_clients {
            self.schedule(400 * MS, Ev::ClientTimeout(c, attempt));
        }
    }

    fn client_retry(&mut self, c: usize, hint: Option<NodeId>) {
        let n = self.nodes.len() as u64;
        let random = NodeId(self.rng.random_range(0..n));
        let client = &mut self.clients[c];
        client.leader_guess = hint;
        client.attempts += 1;
        let p = client.pending.as_mut().expect("pending");
        p.attempt = client.attempts;
        p.target = hint.unwrap_or(random);
        self.client_send(c);
    }

    fn client_answer(&mut self, c: usize, attempt: u64, answer: Answer) {
        let Some(p) = &self.clients[c].pending else {
            return;
        };
        if p.attempt != attempt {
            return;
        }
        let target = p.target;
        let op_index = p.op_index;
        if self.scripted_clients {
            self.log(format!("client {c}: n{target} answers {answer:?}"));
        }
        match answer {
            Answer::Redirect(_) if self.scripted_clients => {
                // Unanswered: the history keeps it as "may have taken effect".
                self.clients[c].pending = None;
            }
            Answer::Redirect(hint) => {
                let hint = hint.filter(|h| *h != target);
                self.client_retry(c, hint);
            }
            Answer::Written(reply) => {
                let op = &mut self.history[op_index];
                op.ret = Some(self.now);
                if let (OpKind::Incr { result }, Reply::Value(v)) = (&mut op.kind, reply) {
                    *result = Some(v);
                }
                self.finish(c, target);
            }
            Answer::Read(value) => {
                let op = &mut self.history[op_index];
                op.ret = Some(self.now);
                op.kind = OpKind::Get {
                    result: Some(value),
                };
                self.finish(c, target);
            }
        }
    }

    fn finish(&mut self, c: usize, leader: NodeId) {
        self.clients[c].pending = None;
        self.clients[c].leader_guess = Some(leader);
        let d = self.rng.random_range(0..20) * MS;
        self.schedule(d, Ev::ClientNext(c));
    }

    fn reply(&mut self, client: usize, attempt: u64, answer: Answer) {
        let d = self.net_delay();
        self.schedule(d, Ev::ToClient(client, attempt, answer));
    }

    fn client_request(&mut self, id: NodeId, msg: ClientMsg) -> Outcome {
        if self.nodes[&id].raft.is_none() {
            return Ok(());
        }
        if self.nodes[&id].busy_until > self.now {
            let t = self.nodes[&id].busy_until - self.now;
            self.schedule(t, Ev::ToNode(id, msg));
            return Ok(());
        }
        let local = self.local(id);
        match msg {
            ClientMsg::Write {
                client,
                attempt,
                req,
            } => {
                let bytes = Bytes::from(serde_json::to_vec(&req).expect("encode"));
                match self.raft(id).propose(bytes, local) {
                    Ok(log_id) => {
                        self.nodes
                            .get_mut(&id)
                            .unwrap()
                            .proposals
                            .insert(log_id.index.0, (log_id.term, client, attempt));
                    }
                    Err(ProposeError::NotLeader { leader }) => {
                        self.reply(client, attempt, Answer::Redirect(leader))
                    }
                    Err(_) => self.reply(client, attempt, Answer::Redirect(None)),
                }
            }
            ClientMsg::Read {
                client,
                attempt,
                key,
            } => {
                let rid = self.next_read_id;
                self.next_read_id += 1;
                match self.raft(id).read(rid, local) {
                    Ok(()) => {
                        self.nodes
                            .get_mut(&id)
                            .unwrap()
                            .reads
                            .insert(rid, (client, attempt, key));
                    }
                    Err(ProposeError::NotLeader { leader }) => {
                        self.reply(client, attempt, Answer::Redirect(leader))
                    }
                    Err(_) => self.reply(client, attempt, Answer::Redirect(None)),
                }
            }
        }
        self.after_input(id)
    }

    // ---------------------------------------------------------------- faults

    fn current_leader(&self) -> Option<NodeId> {
        self.nodes
            .values()
            .filter(|n| n.raft.as_ref().is_some_and(|r| r.role() == Role::Leader))
            .max_by_key(|n| n.raft.as_ref().unwrap().term())
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
                if self.crash(victim) {
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
                if self.nodes[&victim].raft.is_some() {
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
                    let r = self.raft(l).transfer_leadership(to, local);
                    self.log(format!("TRANSFER n{l} -> n{to}: {r:?}"));
                    let _ = self.after_input(l);
                }
            }
            80..=89 => self.membership_fault(leader),
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
        let m = self.raft(l).membership().clone();
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
        let local = self.local(l);
        let r = self.raft(l).propose_conf_change(change, local);
        self.log(format!("MEMBERSHIP n{l} {change:?}: {r:?}"));
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
            .filter(|n| n.raft.is_none())
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
        let Some(raft) = &node.raft else {
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
                o.id != id && o.raft.is_some() && o.lease_real_expiry.is_some_and(|e| e > now)
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
