//! The world a transcript runs in: real `Raft` cores, one shared clock, a
//! disk per node that keeps what each `Ready` asked to persist (so a
//! restart starts from it), and a network that holds every message until a
//! command delivers or drops it.

use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};

use raftkv::raft::{
    ConfChange, Config, Durable, Entry, HardState, Instant, LogIndex, Membership, Message, NodeId,
    Persisted, Raft, Ready, Snapshot, bootstrap,
};

use crate::print::{self, at, ms};

#[derive(Default)]
struct Disk {
    hard_state: HardState,
    snapshot: Option<Snapshot>,
    entries: Vec<Entry>,
}

impl Disk {
    fn persist(&mut self, r: &Ready) {
        if let Some(hs) = r.hard_state {
            self.hard_state = hs;
        }
        if let Some(s) = &r.snapshot {
            // The leader's snapshot replaces the whole stored log.
            self.snapshot = Some(s.clone());
            self.entries.clear();
        }
        if let Some(first) = r.entries.first() {
            self.entries.retain(|e| e.index() < first.index());
            self.entries.extend(r.entries.iter().cloned());
        }
    }
}

struct Node {
    raft: Option<Raft>,
    disk: Disk,
    applied: LogIndex,
    /// The last `Ready`'s acknowledgement: its disk may still be writing
    /// until the node's next `ready`, which advances it first.
    writing: Option<Durable>,
}

pub struct Cluster {
    now: Instant,
    cfg: Config,
    nodes: BTreeMap<NodeId, Node>,
    /// Sent and not yet delivered, in send order.
    net: Vec<Message>,
    /// Links (from, to) that lose every message.
    cut: BTreeSet<(NodeId, NodeId)>,
}

type Out = Vec<String>;

fn node_id(s: &str) -> Result<NodeId, String> {
    s.trim_start_matches('n')
        .parse()
        .map(NodeId)
        .map_err(|_| format!("`{s}`: not a node id"))
}

/// `a->b`, where either side may be `*` (any node).
fn route(s: &str) -> Result<(Option<NodeId>, Option<NodeId>), String> {
    let (a, b) = s
        .split_once("->")
        .ok_or_else(|| format!("`{s}`: expected from->to"))?;
    let side = |x: &str| (x != "*").then(|| node_id(x)).transpose();
    Ok((side(a)?, side(b)?))
}

fn matches(m: &Message, (from, to): (Option<NodeId>, Option<NodeId>)) -> bool {
    from.is_none_or(|f| m.from == f) && to.is_none_or(|t| m.to == t)
}

impl Cluster {
    pub fn new() -> Cluster {
        Cluster {
            now: Instant::default(),
            cfg: Config::new(NodeId(0)),
            nodes: BTreeMap::new(),
            net: Vec::new(),
            cut: BTreeSet::new(),
        }
    }

    /// Runs one command line; returns its output lines.
    pub fn run(&mut self, line: &str) -> Result<Out, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (cmd, args) = words.split_first().ok_or("empty command")?;
        let ids = || {
            args.iter()
                .map(|a| node_id(a))
                .collect::<Result<Vec<_>, _>>()
        };
        let one = || -> Result<NodeId, String> { node_id(args.first().ok_or("which node?")?) };
        match *cmd {
            "nodes" => self.founders(args),
            "add-node" => {
                for id in ids()? {
                    self.add(id, Disk::default());
                }
                Ok(vec![])
            }
            "campaign" => self.campaign(one()?),
            "tick" => self.tick(args),
            "stabilize" => self.stabilize(),
            "ready" => Ok(self.ready(one()?)),
            "heartbeats" => {
                let id = one()?;
                let early = self.raft(id)?.take_heartbeats();
                let out = early
                    .iter()
                    .map(|m| format!("send {}", print::message(m)))
                    .collect();
                self.net.extend(early);
                Ok(out)
            }
            "deliver" => self.deliver(route(args.first().copied().unwrap_or("*->*"))?),
            "drop" => Ok(self.drop_msgs(route(args.first().ok_or("which link?")?)?)),
            "propose" => {
                let value = args.get(1).ok_or("propose N VALUE")?;
                let (id, now) = (one()?, self.now);
                let r = self.raft(id)?.propose(Bytes::from(value.to_string()), now);
                Ok(vec![match r {
                    Ok(lid) => format!("n{id} appended {}", print::id(lid)),
                    Err(e) => format!("n{id} refused: {e}"),
                }])
            }
            "read" => {
                let req: u64 = args
                    .get(1)
                    .and_then(|a| a.parse().ok())
                    .ok_or("read N ID")?;
                let (id, now) = (one()?, self.now);
                Ok(match self.raft(id)?.read(req, now) {
                    Ok(()) => vec![],
                    Err(e) => vec![format!("n{id} refused read {req}: {e}")],
                })
            }
            "conf" => self.conf(args),
            "transfer" => {
                let (from, to) = (one()?, node_id(args.get(1).ok_or("transfer FROM TO")?)?);
                let now = self.now;
                Ok(match self.raft(from)?.transfer_leadership(to, now) {
                    Ok(()) => vec![],
                    Err(e) => vec![format!("n{from} refused: {e}")],
                })
            }
            "compact" => self.compact(one()?),
            "isolate" => {
                let n = one()?;
                for o in self.nodes.keys().copied().filter(|o| *o != n) {
                    self.cut.extend([(n, o), (o, n)]);
                }
                Ok(vec![])
            }
            "cut" => {
                let (Some(from), Some(to)) = route(args.first().ok_or("cut FROM->TO")?)? else {
                    return Err("cut FROM->TO names both nodes".into());
                };
                self.cut.insert((from, to));
                Ok(vec![])
            }
            "conn-lost" => {
                let (Some(at), Some(peer)) = route(args.first().ok_or("conn-lost AT->PEER")?)?
                else {
                    return Err("conn-lost AT->PEER names both nodes".into());
                };
                let now = self.now;
                self.raft(at)?.connection_lost(peer, now);
                Ok(vec![])
            }
            "heal" => {
                self.cut.clear();
                Ok(vec![])
            }
            "crash" => {
                let n = one()?;
                let node = self.node(n)?;
                node.raft = None;
                node.writing = None;
                Ok(vec![])
            }
            "restart" => {
                let n = one()?;
                self.start(n);
                Ok(vec![])
            }
            "status" => {
                let ids = if args.is_empty() {
                    self.nodes.keys().copied().collect()
                } else {
                    ids()?
                };
                ids.into_iter().map(|id| self.status(id)).collect()
            }
            "log" => self.log(one()?),
            "inject" => {
                let m = print::parse_message(&args.join(" "))?;
                let (to, now) = (m.to, self.now);
                self.raft(to)?.step(m, now);
                Ok(vec![])
            }
            other => Err(format!("unknown command `{other}`")),
        }
    }

    /// `nodes 1 2 3 [key=value ...]`: the founding voters, each with the
    /// bootstrap entry; options tune every node's configuration.
    fn founders(&mut self, args: &[&str]) -> Result<Out, String> {
        let mut ids = Vec::new();
        for a in args {
            match a.split_once('=') {
                None => ids.push(node_id(a)?),
                Some((k, v)) => {
                    let n = || {
                        v.parse::<usize>()
                            .map_err(|_| format!("`{a}`: not a number"))
                    };
                    match k {
                        "max_inflight" => self.cfg.max_inflight = n()?,
                        "max_batch_entries" => self.cfg.max_batch_entries = n()?,
                        _ => return Err(format!("unknown option `{k}`")),
                    }
                }
            }
        }
        let founding = bootstrap(Membership::new(ids.iter().copied()));
        for id in ids {
            let disk = Disk {
                hard_state: founding.hard_state,
                snapshot: None,
                entries: founding.entries.clone(),
            };
            self.add(id, disk);
        }
        Ok(vec![])
    }

    fn add(&mut self, id: NodeId, disk: Disk) {
        let node = Node {
            raft: None,
            disk,
            applied: LogIndex(0),
            writing: None,
        };
        self.nodes.insert(id, node);
        self.start(id);
    }

    /// Starts (or restarts) a node from what its disk holds.
    fn start(&mut self, id: NodeId) {
        let mut cfg = self.cfg.clone();
        cfg.id = id;
        cfg.seed = id.0;
        let now = self.now;
        let node = self.nodes.get_mut(&id).expect("added");
        let persisted = Persisted {
            hard_state: node.disk.hard_state,
            snapshot: node.disk.snapshot.clone(),
            entries: node.disk.entries.clone(),
        };
        node.applied = persisted
            .snapshot
            .as_ref()
            .map_or(LogIndex(0), |s| s.meta.last.index);
        node.raft = Some(Raft::new(cfg, persisted, now));
    }

    fn node(&mut self, id: NodeId) -> Result<&mut Node, String> {
        self.nodes.get_mut(&id).ok_or(format!("no node n{id}"))
    }

    fn raft(&mut self, id: NodeId) -> Result<&mut Raft, String> {
        self.node(id)?.raft.as_mut().ok_or(format!("n{id} is down"))
    }

    fn running(&self) -> Vec<NodeId> {
        let up = self.nodes.iter().filter(|(_, n)| n.raft.is_some());
        up.map(|(id, _)| *id).collect()
    }

    /// Ticks `id` at its next deadline (its election timeout, if it follows).
    fn campaign(&mut self, id: NodeId) -> Result<Out, String> {
        let deadline = self.raft(id)?.next_deadline();
        self.now = self.now.max(deadline);
        let now = self.now;
        self.raft(id)?.tick(now);
        Ok(vec![format!("now {}", at(now))])
    }

    /// `tick +50ms [nodes]`: the clock moves on, then the nodes (all
    /// running ones by default) tick.
    fn tick(&mut self, args: &[&str]) -> Result<Out, String> {
        let by = args
            .first()
            .and_then(|a| a.strip_prefix('+'))
            .ok_or("tick +DURATION")?;
        self.now = self.now + print::parse_ms(by)?;
        let ids = match &args[1..] {
            [] => self.running(),
            some => some.iter().map(|a| node_id(a)).collect::<Result<_, _>>()?,
        };
        let now = self.now;
        for id in ids {
            self.raft(id)?.tick(now);
        }
        Ok(vec![format!("now {}", at(now))])
    }

    /// Takes `id`'s ready: persists, sends, applies; prints what it held.
    fn ready(&mut self, id: NodeId) -> Out {
        let node = self.nodes.get_mut(&id).expect("node");
        let Some(raft) = node.raft.as_mut() else {
            return vec![];
        };
        if let Some(durable) = node.writing.take() {
            raft.advance(durable);
        }
        let r = raft.ready();
        node.writing = Some(r.durable);
        if r.is_empty() {
            return vec![];
        }
        node.disk.persist(&r);
        if let Some(s) = &r.snapshot {
            node.applied = s.meta.last.index;
        }
        if let Some(last) = r.committed.last() {
            node.applied = last.index();
        }
        let out = print::ready(id, &r);
        self.net.extend(r.messages);
        out
    }

    /// Delivers the messages in flight on the matching links (those on a cut
    /// link or to a node that is down are lost). What the receivers send in
    /// return waits for the next delivery.
    fn deliver(&mut self, on: (Option<NodeId>, Option<NodeId>)) -> Result<Out, String> {
        let (now, mut out) = (self.now, vec![]);
        let (go, stay): (Vec<Message>, Vec<Message>) = std::mem::take(&mut self.net)
            .into_iter()
            .partition(|m| matches(m, on));
        self.net = stay;
        for m in go {
            let to = m.to;
            let down = self.nodes.get(&to).is_none_or(|n| n.raft.is_none());
            if down || self.cut.contains(&(m.from, m.to)) {
                out.push(format!("lost {}", print::message(&m)));
                continue;
            }
            self.raft(to)?.step(m, now);
        }
        Ok(out)
    }

    fn drop_msgs(&mut self, on: (Option<NodeId>, Option<NodeId>)) -> Out {
        let (gone, stay): (Vec<Message>, Vec<Message>) = std::mem::take(&mut self.net)
            .into_iter()
            .partition(|m| matches(m, on));
        self.net = stay;
        gone.iter()
            .map(|m| format!("dropped {}", print::message(m)))
            .collect()
    }

    /// Readies and delivers until nothing moves (the clock stands still).
    fn stabilize(&mut self) -> Result<Out, String> {
        let mut out = Vec::new();
        loop {
            for id in self.running() {
                out.extend(self.ready(id));
            }
            if self.net.is_empty() {
                return Ok(out);
            }
            out.extend(self.deliver((None, None))?);
        }
    }

    /// `conf LEADER add-learner|promote|remove N`
    fn conf(&mut self, args: &[&str]) -> Result<Out, String> {
        let [leader, what, n] = args else {
            return Err("conf LEADER add-learner|promote|remove N".into());
        };
        let (leader, n) = (node_id(leader)?, node_id(n)?);
        let change = match *what {
            "add-learner" => ConfChange::AddLearner(n),
            "promote" => ConfChange::Promote(n),
            "remove" => ConfChange::Remove(n),
            other => return Err(format!("unknown change `{other}`")),
        };
        let now = self.now;
        let raft = self.raft(leader)?;
        let answer = match raft.propose_conf_change(change, Bytes::new(), now) {
            Ok(lid) => format!("n{leader} appended {}", print::id(lid)),
            Err(e) => format!("n{leader} refused: {e}"),
        };
        Ok(vec![answer])
    }

    /// The node snapshots what it applied, as on `Ready::snapshot_due`.
    fn compact(&mut self, id: NodeId) -> Result<Out, String> {
        let applied = self.node(id)?.applied;
        let data = Bytes::from(format!("state@{applied}"));
        let snap = self.raft(id)?.compact(applied, data);
        let disk = &mut self.node(id)?.disk;
        disk.entries.retain(|e| e.index() > applied);
        disk.snapshot = Some(snap);
        Ok(vec![])
    }

    fn status(&mut self, id: NodeId) -> Result<String, String> {
        let now = self.now;
        let applied = self.node(id)?.applied;
        let Some(r) = self.node(id)?.raft.as_ref() else {
            return Ok(format!("n{id}: down"));
        };
        let s = r.status(now);
        let leader = s.leader.map_or("unknown".into(), |l| format!("n{l}"));
        let lease = s.lease_remaining.map_or("none".into(), ms);
        Ok(format!(
            "n{id}: {} term={} leader={leader} last={} commit={} applied={applied} lease={lease}",
            s.role.as_str(),
            s.term,
            print::id(r.last_log_id()),
            s.commit,
        ))
    }

    /// What the node's disk holds.
    fn log(&mut self, id: NodeId) -> Result<Out, String> {
        let disk = &self.node(id)?.disk;
        let snap = disk
            .snapshot
            .as_ref()
            .map_or("none".into(), |s| print::id(s.meta.last));
        Ok(vec![format!(
            "n{id} disk: snapshot={snap} entries=[{}]",
            print::entries(&disk.entries)
        )])
    }
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster::new()
    }
}
