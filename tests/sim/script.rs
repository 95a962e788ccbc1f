//! Directed scenarios: a script of actions and waits, played in the same
//! deterministic world and under the same checks as the random runs.
//!
//! Some bugs need an interleaving that random faults reach too rarely (a
//! voter that acknowledged the old leader restarts and votes within one lease;
//! Raft's Figure 8). A script steers the cluster there with the adversary's
//! powers only: it drops messages per link, crashes and restarts nodes, holds
//! election timers (a follower whose timer is held never times out on its
//! own, as if its randomized timeout were longer than the scenario) and sends
//! client requests. It never forges a message or touches the core's state.

use super::*;
use raftkv::raft::{ConfChange, LogId, MessageBody};
use std::fmt;

/// Which messages on a link a rule drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Traffic {
    All,
    /// AppendEntries, heartbeats included. Votes still pass, so a node can
    /// win an election while nobody hears it lead.
    Appends,
    /// AppendEntries that carry an entry of this term: replication to that
    /// follower stops just before the leader's first entry of the term.
    EntriesOfTerm(u64),
    /// AppendEntries that carry an entry beyond this index: the follower
    /// gets the log up to it and no further, heartbeats still pass.
    EntriesAfter(u64),
    /// Nothing is lost: every message on the link waits (a slow link, a
    /// long queue) until the rule is lifted, then goes on in order.
    Held,
}

/// Drops the matching messages from `from` to `to` until the script heals
/// the network, those already in flight included (a reordered message sent
/// before the cut would otherwise slip through and defeat the steering).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub from: NodeId,
    pub to: NodeId,
    pub what: Traffic,
}

impl Rule {
    pub(super) fn drops(&self, m: &Message) -> bool {
        if m.from != self.from || m.to != self.to {
            return false;
        }
        match (&self.what, &m.body) {
            (Traffic::All, _) => true,
            (Traffic::Appends, MessageBody::Append { .. } | MessageBody::Heartbeat { .. }) => true,
            (Traffic::EntriesOfTerm(t), MessageBody::Append { entries, .. }) => {
                entries.iter().any(|e| e.term() == Term(*t))
            }
            (Traffic::EntriesAfter(i), MessageBody::Append { entries, .. }) => {
                entries.iter().any(|e| e.index() > LogIndex(*i))
            }
            _ => false,
        }
    }

    /// Whether the rule keeps `m` waiting (it is delivered once lifted).
    pub(super) fn holds(&self, m: &Message) -> bool {
        self.what == Traffic::Held && m.from == self.from && m.to == self.to
    }
}

#[derive(Clone, Debug)]
enum Action {
    Cut(Rule),
    /// Every link to and from the node.
    Isolate(NodeId),
    /// Lift every rule.
    Heal,
    /// Lift the rules on one link (a held link delivers what it kept).
    Lift(NodeId, NodeId),
    /// The node stops; its peers' connections to it stay silent (a
    /// machine that lost power, a network that stopped carrying packets).
    Crash(NodeId),
    /// The node's process is killed: it stops, and its peers' connections
    /// to it reset at once.
    Kill(NodeId),
    /// The connections between two live nodes reset (a proxy's reset):
    /// both ends see it; nothing else is lost.
    Reset(NodeId, NodeId),
    Restart(NodeId),
    /// The node's timer stops: as a follower it never times out on its own
    /// (a leader would stop its heartbeats too: scripts hold followers only).
    HoldTimer(NodeId),
    ReleaseTimer(NodeId),
    /// Every fsync of the node takes this long from now on (a disk stalled
    /// behind writeback), instead of a random time.
    SlowDisk(NodeId, Duration),
    /// The node snapshots its state machine now and compacts its log, as it
    /// does when `Ready::snapshot_due` asks (only the moment is chosen).
    Compact(NodeId),
    /// The node asks its core to hand leadership over, as the driver does
    /// before a graceful shutdown.
    Transfer(NodeId, NodeId),
    /// The node (a leader) proposes a membership change, as `raftctl`
    /// asks through the node's admin API.
    Change(NodeId, ConfChange),
    Call {
        client: usize,
        node: NodeId,
        call: Call,
    },
    /// The client sends its unanswered request again, the same session
    /// sequence number included, to the node (as the real client does
    /// after a lost answer).
    Retry {
        client: usize,
        node: NodeId,
    },
}

/// What a script waits for, or expects to hold.
#[derive(Clone, Copy, Debug)]
pub enum Cond {
    /// The node leads this term.
    Leads(NodeId, u64),
    /// The node holds a lease it may serve reads from.
    Lease(NodeId),
    /// The node's disk holds this entry (durable: it survives a crash).
    Durable(NodeId, LogId),
    /// The node's core knows this index is committed.
    Commits(NodeId, u64),
    /// The client has no request in flight.
    Answered(usize),
    /// The client's last membership change was answered with success.
    Changed(usize),
    /// The node's membership (as its log has it) no longer lists the member.
    Excludes(NodeId, NodeId),
}

#[derive(Clone, Debug)]
enum Step {
    Do(Action),
    /// Let the world run this long.
    Run(Duration),
    /// Let the world run until the condition holds; not within the limit
    /// means the script no longer steers the cluster where it meant to.
    Until(Cond, Duration),
    /// The condition must hold now: the scenario reached the state it is about.
    Expect(Cond),
    /// The condition must hold now, or the protocol failed to stay live
    /// (a `Liveness` failure, not the script's).
    ExpectLive(Cond),
    /// The condition must hold now, or a retry was not answered as its
    /// first attempt took effect (an `ExactlyOnce` failure).
    ExpectOnce(Cond),
}

/// A list of steps, written with the builder methods below.
#[derive(Clone, Debug, Default)]
pub struct Script {
    steps: Vec<Step>,
    /// Changes to every node's configuration, made before the cluster starts.
    tuning: Vec<fn(&mut Config)>,
}

impl Script {
    pub fn new() -> Script {
        Script::default()
    }

    fn act(mut self, a: Action) -> Script {
        self.steps.push(Step::Do(a));
        self
    }

    pub fn cut(self, from: NodeId, to: NodeId, what: Traffic) -> Script {
        self.act(Action::Cut(Rule { from, to, what }))
    }
    /// Cuts every message from `from` to each of `to`.
    pub fn cut_all(self, from: NodeId, to: &[NodeId]) -> Script {
        to.iter().fold(self, |s, n| s.cut(from, *n, Traffic::All))
    }
    pub fn isolate(self, n: NodeId) -> Script {
        self.act(Action::Isolate(n))
    }
    pub fn heal(self) -> Script {
        self.act(Action::Heal)
    }
    /// Messages from `from` to `to` wait until the link is lifted.
    pub fn hold(self, from: NodeId, to: NodeId) -> Script {
        self.cut(from, to, Traffic::Held)
    }
    pub fn lift(self, from: NodeId, to: NodeId) -> Script {
        self.act(Action::Lift(from, to))
    }
    pub fn compact(self, n: NodeId) -> Script {
        self.act(Action::Compact(n))
    }
    pub fn transfer(self, from: NodeId, to: NodeId) -> Script {
        self.act(Action::Transfer(from, to))
    }
    pub fn change(self, leader: NodeId, change: ConfChange) -> Script {
        self.act(Action::Change(leader, change))
    }
    /// Every node starts with this change to the directed configuration.
    pub fn tune(mut self, f: fn(&mut Config)) -> Script {
        self.tuning.push(f);
        self
    }
    pub fn crash(self, n: NodeId) -> Script {
        self.act(Action::Crash(n))
    }
    pub fn kill(self, n: NodeId) -> Script {
        self.act(Action::Kill(n))
    }
    pub fn reset(self, a: NodeId, b: NodeId) -> Script {
        self.act(Action::Reset(a, b))
    }
    pub fn restart(self, n: NodeId) -> Script {
        self.act(Action::Restart(n))
    }
    pub fn hold_timer(self, n: NodeId) -> Script {
        self.act(Action::HoldTimer(n))
    }
    pub fn release_timer(self, n: NodeId) -> Script {
        self.act(Action::ReleaseTimer(n))
    }
    pub fn set(self, client: usize, node: NodeId, key: &str, value: &str) -> Script {
        let call = Call::Write(Cmd::Set(key.into(), value.into()));
        self.act(Action::Call { client, node, call })
    }
    /// The client opens a session at the node.
    pub fn register(self, client: usize, node: NodeId) -> Script {
        let call = Call::Register;
        self.act(Action::Call { client, node, call })
    }
    /// The client asks the node for a membership change through its session.
    pub fn change_through(self, client: usize, node: NodeId, change: ConfChange) -> Script {
        let call = Call::Change(change);
        self.act(Action::Call { client, node, call })
    }
    pub fn retry(self, client: usize, node: NodeId) -> Script {
        self.act(Action::Retry { client, node })
    }
    pub fn get(self, client: usize, node: NodeId, key: &str) -> Script {
        let call = Call::Get(key.into());
        self.act(Action::Call { client, node, call })
    }

    pub fn run(mut self, d: Duration) -> Script {
        self.steps.push(Step::Run(d));
        self
    }
    pub fn until(mut self, c: Cond, limit: Duration) -> Script {
        self.steps.push(Step::Until(c, limit));
        self
    }
    pub fn expect(mut self, c: Cond) -> Script {
        self.steps.push(Step::Expect(c));
        self
    }
    pub fn expect_live(mut self, c: Cond) -> Script {
        self.steps.push(Step::ExpectLive(c));
        self
    }
    pub fn expect_once(mut self, c: Cond) -> Script {
        self.steps.push(Step::ExpectOnce(c));
        self
    }
    pub fn slow_disk(self, n: NodeId, sync: Duration) -> Script {
        self.act(Action::SlowDisk(n, sync))
    }
}

/// A cluster and a script to play on it.
pub struct Scenario {
    pub name: &'static str,
    /// One clock rate (local time per real time) per node; the founding
    /// members are n0..n(len-1).
    pub clock_rates: Vec<f64>,
    pub script: Script,
    /// After the script the network heals and every timer runs again; the
    /// cluster then settles this long before the end checks.
    pub settle: Duration,
}

impl World {
    /// A quiet world for `scenario`: no random faults, no random clients.
    pub fn directed(seed: u64, opts: Options, scenario: &Scenario) -> World {
        let rng = StdRng::seed_from_u64(seed);
        let mut cfg = Config::new(NodeId(0));
        // One entry per message and one message in flight: replication
        // advances one entry per round trip, so a script can stop it exactly.
        cfg.max_inflight = 1;
        cfg.max_batch_entries = 1;
        for tune in &scenario.script.tuning {
            tune(&mut cfg);
        }
        let n = scenario.clock_rates.len() as u64;
        let founders = Membership::new((0..n).map(NodeId));
        let nodes = scenario
            .clock_rates
            .iter()
            .enumerate()
            .map(|(i, &rate)| {
                let id = NodeId(i as u64);
                // Distinct offsets: no two local clocks read the same.
                let clock = Clock {
                    offset: (i as u64 + 1) * 100 * MS,
                    rate,
                };
                (id, Node::new(id, clock, founder_disk(&founders)))
            })
            .collect();
        let mut w = World::assemble(seed, opts, rng, cfg, nodes);
        w.faults_on = false;
        w.clients_on = false;
        w.scripted_clients = true;
        w.state_check_interval = None;
        for node in w.nodes.values_mut() {
            if let Some(r) = &mut node.replica {
                r.set_state_check_interval(None);
            }
        }
        w
    }

    /// Plays the script, lets the cluster settle, then runs the end checks.
    pub fn play(&mut self, scenario: &Scenario) -> Result<Stats, Failure> {
        for step in &scenario.script.steps {
            self.play_step(step)?;
        }
        self.rules.clear();
        self.held.clear();
        self.log("SCRIPT ends: network healed, every timer runs".into());
        self.run_until(self.now + scenario.settle.as_nanos() as u64, None)?;
        self.end_checks()?;
        Ok(self.close_history())
    }

    fn play_step(&mut self, step: &Step) -> Result<(), Failure> {
        let reached = match step {
            Step::Do(a) => {
                self.log(format!("SCRIPT {a}"));
                self.act(a);
                true
            }
            Step::Run(d) => {
                self.run_until(self.now + d.as_nanos() as u64, None)?;
                true
            }
            Step::Until(c, limit) => {
                let reached = self.run_until(self.now + limit.as_nanos() as u64, Some(c))?;
                if reached {
                    self.log(format!("SCRIPT reached: {c}"));
                }
                reached
            }
            Step::Expect(c) => self.holds(c),
            Step::ExpectLive(c) | Step::ExpectOnce(c) => {
                if self.holds(c) {
                    return Ok(());
                }
                let check = match step {
                    Step::ExpectOnce(_) => Check::ExactlyOnce,
                    _ => Check::Liveness,
                };
                let detail = format!("{step} did not hold{}", self.change_answers());
                return Err(self.failure(Violation { check, detail }));
            }
        };
        if reached {
            return Ok(());
        }
        Err(self.failure(Violation {
            check: Check::Script,
            detail: format!("{step} did not happen"),
        }))
    }

    /// Handles events up to `deadline`, or until `cond` holds (true then).
    fn run_until(&mut self, deadline: u64, cond: Option<&Cond>) -> Result<bool, Failure> {
        loop {
            if cond.is_some_and(|c| self.holds(c)) {
                return Ok(true);
            }
            if self.next_due(deadline).is_none() {
                self.now = self.now.max(deadline);
                return Ok(false);
            }
            self.handle_next()?;
        }
    }

    fn act(&mut self, a: &Action) {
        match *a {
            Action::Cut(rule) => self.rules.push(rule),
            Action::Isolate(n) => {
                let others: Vec<NodeId> = self.nodes.keys().copied().filter(|o| *o != n).collect();
                for o in others {
                    for (from, to) in [(n, o), (o, n)] {
                        let what = Traffic::All;
                        self.rules.push(Rule { from, to, what });
                    }
                }
            }
            Action::Heal => self.rules.clear(),
            Action::Lift(from, to) => self.rules.retain(|r| r.from != from || r.to != to),
            Action::Compact(n) => self.snapshot_now(n),
            Action::Transfer(from, to) => {
                let local = self.local(from);
                self.log(format!("n{from} transfers to n{to}"));
                self.replica(from).transfer_leadership(Some(to), (), local);
                // A refused transfer is the script's business (its answer is
                // logged): the wait that follows it reports that the
                // scenario lost its way.
                self.deliver(from);
                let _ = self.after_input(from);
            }
            Action::Change(leader, change) => self.propose_change(leader, change),
            Action::Crash(n) => {
                self.crash(n, false);
            }
            Action::Kill(n) => {
                self.crash(n, true);
            }
            Action::Reset(a, b) => {
                self.reset_connection(a, b);
                self.reset_connection(b, a);
            }
            Action::Restart(n) => {
                if self.nodes[&n].replica.is_none() {
                    self.start_node(n);
                }
            }
            Action::HoldTimer(n) => {
                self.held.insert(n);
            }
            Action::ReleaseTimer(n) => {
                self.held.remove(&n);
            }
            Action::SlowDisk(n, sync) => {
                self.nodes.get_mut(&n).unwrap().sync_time = Some(sync.as_nanos() as u64);
            }
            Action::Call {
                client,
                node,
                ref call,
            } => self.call(client, node, call.clone()),
            Action::Retry { client, node } => self.client_retry(client, Some(node)),
        }
    }

    /// The clients' last membership-change answers, for a failure message.
    fn change_answers(&self) -> String {
        let answers: Vec<String> = (self.clients.iter().enumerate())
            .filter_map(|(c, client)| Some(format!("client {c}: {:?}", client.changed.as_ref()?)))
            .collect();
        if answers.is_empty() {
            String::new()
        } else {
            format!(" (membership changes answered: {})", answers.join(", "))
        }
    }

    /// Whether a script's rule keeps `m` waiting on its link for now.
    pub(super) fn held_by_script(&self, m: &Message) -> bool {
        self.rules.iter().any(|r| r.holds(m))
    }

    fn holds(&self, c: &Cond) -> bool {
        let running = |n: &NodeId| self.nodes[n].raft();
        match *c {
            Cond::Leads(n, term) => {
                running(&n).is_some_and(|r| r.role() == Role::Leader && r.term() == Term(term))
            }
            Cond::Lease(n) => {
                running(&n).is_some_and(|r| r.lease_remaining(self.local(n)).is_some())
            }
            Cond::Durable(n, id) => self.nodes[&n].disk.term_at(id.index) == Some(id.term),
            Cond::Commits(n, i) => running(&n).is_some_and(|r| r.commit_index() >= LogIndex(i)),
            Cond::Answered(client) => self.clients[client].pending.is_none(),
            Cond::Changed(client) => matches!(self.clients[client].changed, Some(Ok(_))),
            Cond::Excludes(n, member) => {
                running(&n).is_some_and(|r| !r.membership().contains(member))
            }
        }
    }
}

// Readable trace lines and failure messages.

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.what {
            Traffic::All => "everything".to_string(),
            Traffic::Appends => "appends".to_string(),
            Traffic::EntriesOfTerm(t) => format!("appends carrying term-{t} entries"),
            Traffic::EntriesAfter(i) => format!("appends carrying entries after index {i}"),
            Traffic::Held => {
                return write!(f, "n{} -> n{}: hold everything", self.from, self.to);
            }
        };
        write!(f, "n{} -> n{}: drop {what}", self.from, self.to)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Cut(rule) => write!(f, "{rule}"),
            Action::Isolate(n) => write!(f, "isolate n{n}"),
            Action::Heal => write!(f, "heal the network"),
            Action::Lift(from, to) => write!(f, "lift the rules on n{from} -> n{to}"),
            Action::Compact(n) => write!(f, "n{n} snapshots and compacts its log"),
            Action::Transfer(from, to) => write!(f, "n{from} hands leadership to n{to}"),
            Action::Change(leader, change) => write!(f, "n{leader} proposes {change:?}"),
            Action::Crash(n) => write!(f, "crash n{n}"),
            Action::Kill(n) => write!(f, "kill n{n} (its peers' connections reset)"),
            Action::Reset(a, b) => write!(f, "reset the connections n{a} <-> n{b}"),
            Action::Restart(n) => write!(f, "restart n{n}"),
            Action::HoldTimer(n) => write!(f, "hold n{n}'s timer"),
            Action::ReleaseTimer(n) => write!(f, "release n{n}'s timer"),
            Action::SlowDisk(n, sync) => write!(f, "every fsync of n{n} takes {sync:?}"),
            Action::Call { client, node, call } => {
                write!(f, "client {client}: {call:?} at n{node}")
            }
            Action::Retry { client, node } => {
                write!(f, "client {client} sends its request again, to n{node}")
            }
        }
    }
}

impl fmt::Display for Cond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cond::Leads(n, term) => write!(f, "n{n} leads term {term}"),
            Cond::Lease(n) => write!(f, "n{n} holds a lease"),
            Cond::Durable(n, id) => {
                write!(f, "n{n} has entry {} of term {} on disk", id.index, id.term)
            }
            Cond::Commits(n, i) => write!(f, "n{n} knows index {i} is committed"),
            Cond::Answered(c) => write!(f, "client {c} has its answer"),
            Cond::Changed(c) => write!(f, "client {c}'s membership change succeeded"),
            Cond::Excludes(n, m) => write!(f, "n{n}'s membership excludes n{m}"),
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Do(a) => write!(f, "`{a}`"),
            Step::Run(d) => write!(f, "`run {d:?}`"),
            Step::Until(c, limit) => write!(f, "`until {c}` (within {limit:?})"),
            Step::Expect(c) => write!(f, "`expect {c}`"),
            Step::ExpectLive(c) | Step::ExpectOnce(c) => write!(f, "`expect {c}`"),
        }
    }
}
