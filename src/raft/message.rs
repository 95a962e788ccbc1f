//! What goes in and out of the core: messages, the ready batch, events.

use bytes::Bytes;
use std::time::Duration;

use super::{Entry, HardState, LogId, LogIndex, Membership, NodeId, Snapshot, SnapshotMeta, Term};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    pub term: Term,
    pub body: MessageBody,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageBody {
    /// Replication. `round` is the leader's heartbeat round: acknowledging
    /// it renews the lease from the round's send time.
    Append {
        prev: LogId,
        entries: Vec<Entry>,
        commit: LogIndex,
        round: u64,
    },
    /// `conflict` (on rejection): the follower's term at `prev.index` and the
    /// first index it holds of that term, or (0, last + 1) if its log is shorter.
    AppendResponse {
        success: bool,
        match_index: LogIndex,
        conflict: LogId,
        round: u64,
    },
    /// The leader's heartbeat: contact, the lease round, and the commit
    /// index capped at what this follower is known to hold (etcd's
    /// `min(match, committed)`). It names no log position, so neither it
    /// nor its answer depends on anything still being written to disk: both
    /// may leave while their sender's fsync runs (`Raft::take_heartbeats`).
    Heartbeat { commit: LogIndex, round: u64 },
    /// Acknowledges heartbeat `round`.
    HeartbeatResponse { round: u64 },
    Vote {
        last_log: LogId,
        pre_vote: bool,
        /// Campaign started by TimeoutNow: voters ignore leader stickiness.
        transfer: bool,
    },
    /// `lease_remaining`: how long the lease of the last leader (of term
    /// `lease_term`) this voter heard from may still run, on its own clock.
    VoteResponse {
        granted: bool,
        pre_vote: bool,
        lease_remaining: Duration,
        lease_term: Term,
    },
    Snapshot {
        meta: SnapshotMeta,
        offset: u64,
        data: Bytes,
        done: bool,
        round: u64,
    },
    /// About the snapshot whose last index is `last_index`.
    SnapshotResponse {
        last_index: LogIndex,
        next_offset: u64,
        done: bool,
        round: u64,
    },
    /// Leadership transfer: campaign now. `lease_released`: the sender gave up
    /// a lease it was serving under, so the successor need not wait for it.
    TimeoutNow { lease_released: bool },
}

impl MessageBody {
    pub fn kind(&self) -> &'static str {
        match self {
            MessageBody::Append { .. } => "append",
            MessageBody::AppendResponse { .. } => "append_response",
            MessageBody::Heartbeat { .. } => "heartbeat",
            MessageBody::HeartbeatResponse { .. } => "heartbeat_response",
            MessageBody::Vote { .. } => "vote",
            MessageBody::VoteResponse { .. } => "vote_response",
            MessageBody::Snapshot { .. } => "snapshot",
            MessageBody::SnapshotResponse { .. } => "snapshot_response",
            MessageBody::TimeoutNow { .. } => "timeout_now",
        }
    }
}

/// A read that may be answered once the state machine has applied `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    pub id: u64,
    pub index: LogIndex,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
    /// A follower that does not vote: a learner, or a node outside the membership.
    Learner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
            Role::Learner => "learner",
        }
    }
}

/// One observable change of the core, for structured logs and metrics.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    RoleChanged {
        role: Role,
        term: Term,
        leader: Option<NodeId>,
    },
    ElectionStarted {
        term: Term,
        pre_vote: bool,
    },
    /// A new leader must wait for the old lease before it serves.
    LeaderElected {
        term: Term,
        wait_for_old_lease: Duration,
    },
    LeaseAcquired {
        term: Term,
    },
    LeaseLost {
        term: Term,
    },
    SteppedDown {
        term: Term,
        reason: &'static str,
    },
    MembershipChanged {
        index: LogIndex,
        membership: Membership,
    },
    SnapshotInstalled {
        last: LogId,
    },
    LogCompacted {
        last: LogId,
    },
    TransferStarted {
        to: NodeId,
    },
    TransferAborted {
        to: NodeId,
    },
    /// The connection to the leader this node follows broke
    /// (`Raft::connection_lost`): it campaigns unless the leader is heard
    /// from again within the grace period.
    LeaderConnectionLost {
        leader: NodeId,
    },
    /// A peer's message that no correct peer could send was dropped (see
    /// `raft::validate`): a misconfigured, buggy or corrupt peer.
    MessageDropped {
        from: NodeId,
        kind: &'static str,
        reason: &'static str,
    },
}

/// What one `Ready` asked to make durable, handed back to
/// [`Raft::advance`](crate::raft::Raft::advance) once it is: from then on
/// the core counts its term and vote as durable (a heartbeat may leave
/// ahead of the next `Ready` only under a durable vote), and it hands out
/// the next `Ready`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Durable {
    pub(crate) term: Term,
    pub(crate) voted_for: Option<NodeId>,
}

/// The effects of every call since the previous `ready()`, in the order the
/// caller must carry them out: persist, then send, then apply, then answer.
/// Once what it asked to persist is durable, the caller hands `durable`
/// back to `Raft::advance`; the core hands out no other `Ready` before.
#[derive(Debug, Default)]
pub struct Ready {
    /// Hand back to `Raft::advance` once the rest is persisted.
    pub durable: Durable,
    /// Persist if Some.
    pub hard_state: Option<HardState>,
    /// Whether what is to be persisted must be durable (one fsync) before
    /// `messages` go out. False when the only change is the commit index:
    /// Raft never needs it durable (a restarted node learns it again from
    /// the leader), so writing it unsynced saves an fsync on every commit.
    pub must_sync: bool,
    /// Persist; replaces any stored entries from `entries[0].index()` on.
    pub entries: Vec<Entry>,
    /// A snapshot received from the leader: persist it, discard the stored
    /// log (the core dropped its own), and restore the state machine from it
    /// before applying `committed`.
    pub snapshot: Option<Snapshot>,
    /// Send only after the above are durable (votes and acknowledgements depend on them).
    pub messages: Vec<Message>,
    /// Apply in order.
    pub committed: Vec<Entry>,
    /// Answer after applying `committed`.
    pub reads: Vec<ReadState>,
    /// Reads that lost leadership before they could be answered.
    pub failed_reads: Vec<u64>,
    /// After applying, snapshot the state machine and call `Raft::compact`.
    pub snapshot_due: bool,
    pub events: Vec<Event>,
    /// What a compaction or an installed snapshot dropped, handed over so
    /// the caller frees it where it likes. Nothing to carry out.
    pub released: Released,
}

/// Log entries and snapshot data the core no longer holds. Freeing half a
/// million entries or a 100 MB buffer takes tens of milliseconds, which the
/// node loop cannot spare: it hands them to another thread.
#[derive(Debug, Default)]
pub struct Released {
    pub entries: Vec<Entry>,
    pub snapshots: Vec<Bytes>,
}

impl Released {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.snapshots.is_empty()
    }
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && self.entries.is_empty()
            && self.snapshot.is_none()
            && self.messages.is_empty()
            && self.committed.is_empty()
            && self.reads.is_empty()
            && self.failed_reads.is_empty()
            && !self.snapshot_due
            && self.events.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposeError {
    NotLeader {
        leader: Option<NodeId>,
    },
    /// Leader, but not accepting this now (transfer under way, change pending).
    Busy(String),
    /// A promotion of this learner, which has not caught up with the log:
    /// it passes only as fast as the learner catches up, so the caller
    /// decides how long to wait (a large state can take minutes).
    LearnerBehind(NodeId),
    Invalid(String),
}

impl std::fmt::Display for ProposeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProposeError::NotLeader { leader: Some(l) } => {
                write!(f, "not leader; leader is node {l}")
            }
            ProposeError::NotLeader { leader: None } => write!(f, "not leader; no leader known"),
            ProposeError::Busy(why) => write!(f, "busy: {why}"),
            ProposeError::LearnerBehind(id) => {
                write!(f, "learner {id} has not caught up with the log yet")
            }
            ProposeError::Invalid(why) => write!(f, "invalid: {why}"),
        }
    }
}

impl std::error::Error for ProposeError {}

#[derive(Clone, Debug)]
pub struct PeerStatus {
    pub id: NodeId,
    pub match_index: LogIndex,
    pub next_index: LogIndex,
    pub state: &'static str,
}

#[derive(Clone, Debug)]
pub struct Status {
    pub id: NodeId,
    pub role: Role,
    pub term: Term,
    pub leader: Option<NodeId>,
    pub commit: LogIndex,
    pub applied: LogIndex,
    pub last_index: LogIndex,
    pub snapshot_index: LogIndex,
    pub lease_remaining: Option<Duration>,
    pub membership: Membership,
    /// On the leader: each follower's replication progress.
    pub progress: Vec<PeerStatus>,
}
