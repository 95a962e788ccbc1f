//! The `peer_message` target: messages from the network, checked as the
//! peer service checks them, stepped into a live core.

use crate::pb::{self, peer_message::Body};
use crate::raft::{
    ConfChange, Config, Entry, HardState, Instant, LogId, LogIndex, Membership, MessageBody,
    NodeId, Payload, Persisted, Raft, Role, Snapshot, SnapshotMeta, Term,
};
use crate::server::peer_check::Params;
use crate::server::peer_service;
use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use prost::Message as _;
use std::time::Duration;

const ME: NodeId = NodeId(0);
/// Steps taken from one input at most.
const MAX_STEPS: usize = 256;

/// Peer messages never panic the core or break its invariants.
///
/// Input (decoded with `arbitrary`): how the node starts (role, a snapshot
/// or not, batch and snapshot tuning), then steps: peer messages as raw
/// bytes or built from parts near the node's own term and log, ticks,
/// proposals, reads, membership changes, transfers, `ready()` (persisted
/// to a model of the disk, committed entries applied, compaction when
/// due) and restarts from that disk. Every message goes through
/// `peer_service::check`, as on the peer port. The core runs with its
/// debug assertions; besides them, after every step: snapshot ≤ applied
/// ≤ commit ≤ last index, the term and the durable hard state never go
/// back, only a leader names itself leader, committed entries come out
/// once each and in order, what the core asks to persist continues the
/// stored log, and what it sends comes from it in a term it has had (but
/// for pre-votes).
pub fn peer_message(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(start) = u.arbitrary::<Start>() else {
        return;
    };
    let mut node = Node::new(&start);
    super::each(&mut u, MAX_STEPS, |step| {
        node.step(step);
        node.check();
    });
    node.ready();
}

#[derive(Arbitrary, Debug)]
struct Start {
    role: u8,
    snapshot: bool,
    small_batches: bool,
    threshold: u8,
}

#[derive(Arbitrary, Debug)]
enum Step {
    /// Bytes as they come off the wire.
    Wire(Vec<u8>),
    /// A message built from parts, then encoded.
    Message(Parts),
    Tick(u16),
    Propose(u8),
    Read(u8),
    Change(u8, u8),
    Transfer(u8),
    Ready,
    Heartbeats,
    Restart,
}

/// A number near one the node knows (its term, its last index, ...), so
/// that plausible values are cheap to reach, or any number at all.
#[derive(Arbitrary, Clone, Copy, Debug)]
enum Num {
    Near(i8),
    Any(u64),
}

impl Num {
    fn near(self, base: u64) -> u64 {
        match self {
            Num::Near(d) => base.saturating_add_signed(i64::from(d)),
            Num::Any(v) => v,
        }
    }
}

/// The fields of a peer message; `kind` picks which ones it uses.
#[derive(Arbitrary, Debug)]
struct Parts {
    kind: u8,
    from: u8,
    /// Addressed to another node than this one.
    elsewhere: bool,
    term: Num,
    log_term: Num,
    log_index: Num,
    index: Num,
    round: Num,
    offset: Num,
    lease: Num,
    flags: u8,
    entries: Vec<(Num, u8)>,
    data: Vec<u8>,
}

/// Voters and learners among nodes 0..4 from the bits of `bits`.
fn membership(bits: u8) -> Membership {
    let nodes = |shift: u8| (0..4).filter(move |i| bits >> (shift + i) & 1 == 1);
    let voters = nodes(0).map(|i| NodeId(u64::from(i))).collect();
    let learners = nodes(4)
        .filter(|i| bits >> i & 1 == 0)
        .map(|i| NodeId(u64::from(i)))
        .collect();
    Membership { voters, learners }
}

fn payload(kind: u8) -> pb::entry::Payload {
    match kind % 3 {
        0 => pb::entry::Payload::Noop(pb::Noop {}),
        1 => pb::entry::Payload::Command(Bytes::from(vec![b'c'; usize::from(kind % 8)])),
        _ => pb::entry::Payload::Config(crate::storage::membership_to_pb(&membership(kind))),
    }
}

/// The message `p` describes, sent to the node `raft` (for what "near" means).
fn build(p: &Parts, raft: &Raft, lease_bound: Duration) -> pb::PeerMessage {
    let term = p.term.near(raft.term().0);
    let last = raft.last_log_id();
    let commit = raft.commit_index().0;
    let from = u64::from(p.from % 4);
    let to = if p.elsewhere {
        u64::from(p.from / 4 % 4)
    } else {
        ME.0
    };
    let log_id = pb::LogId {
        term: p.log_term.near(last.term.0),
        index: p.log_index.near(last.index.0),
    };
    let flag = |bit: u8| p.flags >> bit & 1 == 1;
    let index = p.index.near(last.index.0);
    let round = p.round.near(0);
    let body = match p.kind % 9 {
        0 => Body::Append(pb::AppendEntriesRequest {
            from,
            to,
            term,
            prev: Some(log_id),
            entries: p
                .entries
                .iter()
                .zip(1..)
                .map(|((t, kind), i)| pb::Entry {
                    term: t.near(log_id.term),
                    index: log_id.index.wrapping_add(i),
                    payload: Some(payload(*kind)),
                    config_context: Bytes::new(),
                })
                .collect(),
            commit: p.index.near(commit),
            round,
        }),
        1 => Body::AppendResponse(pb::AppendEntriesResponse {
            from,
            to,
            term,
            success: flag(0),
            match_index: index,
            conflict: Some(log_id),
            round,
        }),
        2 => Body::Vote(pb::RequestVoteRequest {
            from,
            to,
            term,
            last_log: Some(log_id),
            pre_vote: flag(1),
            transfer: flag(2),
        }),
        3 => Body::VoteResponse(pb::RequestVoteResponse {
            from,
            to,
            term,
            granted: flag(3),
            pre_vote: flag(1),
            lease_remaining_nanos: p.lease.near(lease_bound.as_nanos() as u64),
            lease_term: log_id.term,
        }),
        4 => Body::Snapshot(pb::InstallSnapshotRequest {
            from,
            to,
            term,
            meta: Some(pb::SnapshotMeta {
                last: Some(log_id),
                membership: Some(crate::storage::membership_to_pb(&membership(p.flags))),
            }),
            offset: p.offset.near(0),
            data: Bytes::copy_from_slice(&p.data),
            done: flag(4),
            round,
        }),
        5 => Body::SnapshotResponse(pb::InstallSnapshotResponse {
            from,
            to,
            term,
            last_index: index,
            next_offset: p.offset.near(0),
            done: flag(4),
            round,
        }),
        6 => Body::TimeoutNow(pb::TimeoutNowRequest {
            from,
            to,
            term,
            lease_released: flag(5),
        }),
        7 => Body::Heartbeat(pb::HeartbeatRequest {
            from,
            to,
            term,
            commit: p.index.near(commit),
            round,
        }),
        _ => Body::HeartbeatResponse(pb::HeartbeatResponse {
            from,
            to,
            term,
            round,
        }),
    };
    pb::PeerMessage { body: Some(body) }
}

/// What the node has on disk: `Storage`'s semantics, in memory.
#[derive(Default)]
struct Disk {
    hard_state: HardState,
    snapshot: Option<Snapshot>,
    entries: Vec<Entry>,
}

impl Disk {
    fn floor(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.meta.last.index.0)
    }

    fn last(&self) -> u64 {
        self.entries.last().map_or(self.floor(), |e| e.index().0)
    }

    /// `Storage::append`, which refuses (and the node stops on) entries
    /// that do not continue the stored log.
    fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        let start = first.index().0;
        assert!(
            start > self.floor() && start <= self.last().saturating_add(1),
            "Ready.entries from {start} do not continue the stored log (snapshot at {}, last {})",
            self.floor(),
            self.last()
        );
        self.entries.retain(|e| e.index().0 < start);
        self.entries.extend_from_slice(entries);
    }

    /// A snapshot from the leader replaces the whole log.
    fn install(&mut self, snap: &Snapshot) {
        self.entries.clear();
        self.snapshot = Some(snap.clone());
    }

    /// The node's own snapshot drops only what it covers.
    fn compact(&mut self, snap: Snapshot) {
        self.entries.retain(|e| e.index() > snap.meta.last.index);
        self.snapshot = Some(snap);
    }

    fn persisted(&self) -> Persisted {
        Persisted {
            hard_state: self.hard_state,
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
        }
    }
}

/// The core under test, its disk, and what the checks remember.
struct Node {
    config: Config,
    params: Params,
    raft: Raft,
    disk: Disk,
    now: Instant,
    /// The last index handed out in `Ready.committed` (or restored).
    applied: LogIndex,
    /// The highest term seen since the last restart.
    term: Term,
}

impl Node {
    fn new(start: &Start) -> Node {
        let mut config = Config::new(ME);
        config.snapshot_threshold = 1 + u64::from(start.threshold % 16);
        if start.small_batches {
            config.max_inflight = 2;
            config.max_batch_entries = 2;
            config.max_batch_bytes = 64;
            config.snapshot_chunk_bytes = 4;
        }
        let params = Params::new(
            config.lease_duration,
            config.max_clock_drift,
            config.election_timeout,
            &crate::kv::Limits::default(),
        );
        let disk = initial_disk(start);
        let raft = Raft::new(config.clone(), disk.persisted(), Instant::default());
        let mut node = Node {
            config,
            params,
            applied: LogIndex(disk.floor()),
            term: raft.term(),
            raft,
            disk,
            now: Instant::default(),
        };
        node.ready();
        if start.role % 4 != 0 {
            node.advance(1000);
        }
        if start.role % 4 == 2 {
            node.win();
        }
        node
    }

    /// Makes the node win the next term with node 1's vote, as a peer
    /// would send it.
    fn win(&mut self) {
        if self.raft.role() != Role::PreCandidate {
            return;
        }
        let term = self.raft.term().0 + 1;
        for pre_vote in [true, false] {
            let vote = pb::RequestVoteResponse {
                from: 1,
                to: ME.0,
                term,
                granted: true,
                pre_vote,
                lease_remaining_nanos: 0,
                lease_term: term - 1,
            };
            self.deliver(&pb::PeerMessage {
                body: Some(Body::VoteResponse(vote)),
            });
        }
        self.ready();
    }

    fn advance(&mut self, ms: u64) {
        self.now = self.now + Duration::from_millis(ms);
        self.raft.tick(self.now);
    }

    /// Encodes `m`, then handles the bytes as the peer port does.
    fn deliver(&mut self, m: &pb::PeerMessage) {
        self.receive(&m.encode_to_vec());
    }

    fn receive(&mut self, bytes: &[u8]) {
        let Ok(m) = pb::PeerMessage::decode(bytes) else {
            return;
        };
        if let Ok(msg) = peer_service::check(m, ME, self.params) {
            self.raft.step(msg, self.now);
        }
    }

    fn step(&mut self, step: Step) {
        let now = self.now;
        match step {
            Step::Wire(bytes) => self.receive(&bytes),
            Step::Message(parts) => {
                let bound = self.params.lease_report_bound();
                self.deliver(&build(&parts, &self.raft, bound));
            }
            Step::Tick(ms) => self.advance(u64::from(ms)),
            Step::Propose(n) => {
                let command = Bytes::from(vec![b'p'; usize::from(n % 16)]);
                let _ = self.raft.propose(command, now);
            }
            Step::Read(id) => {
                let _ = self.raft.read(u64::from(id), now);
            }
            Step::Change(kind, node) => {
                let node = NodeId(u64::from(node % 5));
                let change = match kind % 3 {
                    0 => ConfChange::AddLearner(node),
                    1 => ConfChange::Promote(node),
                    _ => ConfChange::Remove(node),
                };
                let _ = self.raft.propose_conf_change(change, Bytes::new(), now);
            }
            Step::Transfer(to) => {
                let _ = self
                    .raft
                    .transfer_leadership(NodeId(u64::from(to % 4)), now);
            }
            Step::Ready => self.ready(),
            Step::Heartbeats => {
                for m in self.raft.take_heartbeats() {
                    self.check_sent(&m);
                }
            }
            Step::Restart => {
                self.raft = Raft::new(self.config.clone(), self.disk.persisted(), now);
                self.applied = LogIndex(self.disk.floor());
                self.term = self.raft.term();
            }
        }
    }

    /// Takes the `Ready` and carries it out as the node loop does: persist,
    /// send, apply, and compact when asked.
    fn ready(&mut self) {
        let ready = self.raft.ready();
        if let Some(snap) = &ready.snapshot {
            self.disk.install(snap);
            self.applied = snap.meta.last.index;
        }
        self.disk.append(&ready.entries);
        if let Some(hs) = ready.hard_state {
            let old = self.disk.hard_state;
            assert!(
                hs.term >= old.term,
                "durable term back from {old:?} to {hs:?}"
            );
            self.disk.hard_state = hs;
        }
        self.raft.advance(ready.durable);
        for m in &ready.messages {
            self.check_sent(m);
        }
        for e in &ready.committed {
            assert_eq!(
                e.index(),
                self.applied.next(),
                "committed entries skip or repeat one"
            );
            self.applied = e.index();
        }
        assert!(self.applied <= self.raft.commit_index());
        if ready.snapshot_due {
            let snap = self
                .raft
                .compact(self.applied, Bytes::from_static(b"state"));
            self.disk.compact(snap);
        }
    }

    fn check_sent(&self, m: &crate::raft::Message) {
        assert_eq!(m.from, ME, "sent under another id: {m:?}");
        // A pre-vote asks for, and a granted one echoes, a term not yet had.
        let pre_vote = matches!(
            m.body,
            MessageBody::Vote { pre_vote: true, .. }
                | MessageBody::VoteResponse { pre_vote: true, .. }
        );
        assert!(
            pre_vote || m.term <= self.raft.term(),
            "sent in a term not yet had: {m:?}"
        );
        if let MessageBody::Append { entries, .. } = &m.body {
            assert!(entries.iter().all(|e| e.term() <= m.term), "{m:?}");
        }
    }

    /// The invariants that hold after every step.
    fn check(&mut self) {
        let s = self.raft.status(self.now);
        assert!(
            s.snapshot_index <= s.applied && s.applied <= s.commit && s.commit <= s.last_index,
            "{s:?}"
        );
        assert!(s.term >= self.term, "term back from {:?}: {s:?}", self.term);
        self.term = s.term;
        assert_eq!(
            s.role == Role::Leader,
            s.leader == Some(ME),
            "leader and role disagree: {s:?}"
        );
    }
}

/// The founders' log (voters 0, 1, 2; or node 0 a learner), a few terms
/// long, committed up to 3; from index 4 on only, after a snapshot at 3,
/// when `start.snapshot`.
fn initial_disk(start: &Start) -> Disk {
    let members = if start.role % 4 == 3 {
        Membership {
            voters: [1, 2, 3].map(NodeId).into(),
            learners: [ME].into(),
        }
    } else {
        Membership::new([NodeId(0), NodeId(1), NodeId(2)])
    };
    let entry = |term, index, payload| Entry {
        id: LogId::new(term, index),
        payload,
    };
    let command = || Payload::Command(Bytes::from_static(b"x"));
    let mut entries = vec![
        entry(1, 1, Payload::config(members.clone())),
        entry(1, 2, command()),
        entry(2, 3, command()),
        entry(2, 4, command()),
        entry(3, 5, Payload::Noop),
    ];
    let snapshot = start.snapshot.then(|| {
        entries.drain(..3);
        Snapshot {
            meta: SnapshotMeta {
                last: LogId::new(2, 3),
                membership: members,
            },
            data: Bytes::from_static(b"state"),
        }
    });
    Disk {
        hard_state: HardState {
            term: Term(3),
            voted_for: None,
            commit: LogIndex(3),
        },
        snapshot,
        entries,
    }
}
