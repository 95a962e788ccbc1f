//! Protocol quantities of the consensus core, each with its own type.

use bytes::Bytes;
use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id_type!(
    /// A Raft term: a logical clock that only moves forward.
    Term
);
id_type!(
    /// A position in the replicated log; the first entry has index 1, 0 means "none".
    LogIndex
);
id_type!(
    /// A member's identity: the StatefulSet ordinal (`raftkv-2` is node 2).
    NodeId
);

impl LogIndex {
    pub fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }
    pub fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }
}

/// The identity of one log entry: its term and index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LogId {
    pub term: Term,
    pub index: LogIndex,
}

impl LogId {
    pub fn new(term: u64, index: u64) -> LogId {
        LogId {
            term: Term(term),
            index: LogIndex(index),
        }
    }
}

impl PartialOrd for LogId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// "More up to date" order of Raft §5.4.1: compare terms, then indexes.
impl Ord for LogId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.term, self.index).cmp(&(other.term, other.index))
    }
}

/// Who votes and who only listens. Changed one server at a time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
}

impl Membership {
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Membership {
        Membership {
            voters: voters.into_iter().collect(),
            learners: BTreeSet::new(),
        }
    }
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }
    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }
    /// Every member, voters first.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(self.learners.iter()).copied()
    }
    /// How many voters make a majority.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }
}

/// A change of one server (Raft dissertation §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfChange {
    AddLearner(NodeId),
    Promote(NodeId),
    Remove(NodeId),
}

impl ConfChange {
    /// The membership after applying this change, or why it cannot apply.
    pub fn apply(&self, m: &Membership) -> Result<Membership, String> {
        let mut next = m.clone();
        match *self {
            ConfChange::AddLearner(id) => {
                if m.contains(id) {
                    return Err(format!("node {id} is already a member"));
                }
                next.learners.insert(id);
            }
            ConfChange::Promote(id) => {
                if !next.learners.remove(&id) {
                    return Err(format!("node {id} is not a learner"));
                }
                next.voters.insert(id);
            }
            ConfChange::Remove(id) => {
                if !m.contains(id) {
                    return Err(format!("node {id} is not a member"));
                }
                next.voters.remove(&id);
                next.learners.remove(&id);
                if next.voters.is_empty() {
                    return Err("cannot remove the last voter".into());
                }
            }
        }
        Ok(next)
    }
}

/// What a log entry carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// Appended by every new leader so it can commit entries of earlier terms.
    Noop,
    /// An opaque state-machine command.
    Command(Bytes),
    /// The new membership, in force as soon as it is in a node's log, and
    /// the application's opaque `context` for the change (the session of
    /// the request that asked for it, docs/consensus.md "Membership
    /// changes, exactly once"); empty if none.
    Config {
        membership: Membership,
        context: Bytes,
    },
}

impl Payload {
    /// A configuration entry without context (bootstrap, tests).
    pub fn config(membership: Membership) -> Payload {
        Payload::Config {
            membership,
            context: Bytes::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: LogId,
    pub payload: Payload,
}

impl Entry {
    pub fn index(&self) -> LogIndex {
        self.id.index
    }
    pub fn term(&self) -> Term {
        self.id.term
    }
    /// Approximate size, used to bound message and log sizes.
    pub fn size(&self) -> usize {
        24 + match &self.payload {
            Payload::Noop => 0,
            Payload::Command(b) => b.len(),
            Payload::Config {
                membership: m,
                context,
            } => 8 * (m.voters.len() + m.learners.len()) + context.len(),
        }
    }
}

/// What must be on disk before a vote or an append acknowledgement leaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: Term,
    pub voted_for: Option<NodeId>,
    pub commit: LogIndex,
}

/// Describes a snapshot: the last entry it covers and the membership then.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMeta {
    pub last: LogId,
    pub membership: Membership,
}

/// A state-machine snapshot with its metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub meta: SnapshotMeta,
    pub data: Bytes,
}

/// A monotonic timestamp supplied by the caller (the core never reads a clock).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(pub Duration);

impl Instant {
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl std::ops::Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(self.0 + d)
    }
}
