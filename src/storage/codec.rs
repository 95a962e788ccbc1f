//! Conversions between the consensus core's types and their protobuf form.
//! The same encoding is used on disk (WAL, snapshot headers) and on the wire,
//! so the network layer reuses these functions: one definition of the format.
//!
//! Decoding is strict: input that our encoder could never produce (a missing
//! payload, a duplicated member, an index of 0) is an error, not a guess, because
//! a membership silently "repaired" could change who counts for a quorum.

use crate::pb;
use crate::raft::{
    Entry, HardState, LogId, LogIndex, Membership, NodeId, Payload, SnapshotMeta, Term,
};
use bytes::Bytes;
use std::collections::BTreeSet;

/// Every term and index the data directory holds is below this (2^63).
/// Beyond it `index + 1` and the conversions to signed or narrower types
/// elsewhere could overflow; no honest log gets near it (the wire refuses
/// anything above 2^62), so a larger value read from disk is corruption.
pub const MAX_STORED: u64 = (1 << 63) - 1;

/// `value` if it is at most [`MAX_STORED`]; else why not, naming `what`.
pub fn stored(value: u64, what: &str) -> Result<u64, CodecError> {
    if value > MAX_STORED {
        return Err(CodecError(format!(
            "{what} {value} is out of range (at most {MAX_STORED})"
        )));
    }
    Ok(value)
}

/// Why a protobuf message does not describe a valid core value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(pub String);

pub fn log_id_to_pb(id: LogId) -> pb::LogId {
    pb::LogId {
        term: id.term.0,
        index: id.index.0,
    }
}

pub fn log_id_from_pb(id: pb::LogId) -> LogId {
    LogId::new(id.term, id.index)
}

pub fn membership_to_pb(m: &Membership) -> pb::Membership {
    pb::Membership {
        voters: m.voters.iter().map(|n| n.0).collect(),
        learners: m.learners.iter().map(|n| n.0).collect(),
    }
}

pub fn membership_from_pb(m: &pb::Membership) -> Result<Membership, CodecError> {
    let voters = node_set(&m.voters, "voter")?;
    let learners = node_set(&m.learners, "learner")?;
    if let Some(both) = voters.intersection(&learners).next() {
        return Err(CodecError(format!("node {both} is both voter and learner")));
    }
    Ok(Membership { voters, learners })
}

fn node_set(ids: &[u64], what: &str) -> Result<BTreeSet<NodeId>, CodecError> {
    let mut set = BTreeSet::new();
    for &id in ids {
        if !set.insert(NodeId(id)) {
            return Err(CodecError(format!("{what} {id} listed twice")));
        }
    }
    Ok(set)
}

pub fn entry_to_pb(e: &Entry) -> pb::Entry {
    let mut config_context = Bytes::new();
    let payload = match &e.payload {
        Payload::Noop => pb::entry::Payload::Noop(pb::Noop {}),
        Payload::Command(b) => pb::entry::Payload::Command(b.clone()),
        Payload::Config {
            membership,
            context,
        } => {
            config_context = context.clone();
            pb::entry::Payload::Config(membership_to_pb(membership))
        }
    };
    pb::Entry {
        term: e.id.term.0,
        index: e.id.index.0,
        payload: Some(payload),
        config_context,
    }
}

pub fn entry_from_pb(e: pb::Entry) -> Result<Entry, CodecError> {
    let payload = match e.payload {
        Some(pb::entry::Payload::Noop(_)) => Payload::Noop,
        Some(pb::entry::Payload::Command(b)) => Payload::Command(b),
        Some(pb::entry::Payload::Config(m)) => Payload::Config {
            membership: membership_from_pb(&m)?,
            context: e.config_context,
        },
        None => return Err(CodecError(format!("entry {} has no payload", e.index))),
    };
    if e.index == 0 {
        return Err(CodecError("entry with index 0".into()));
    }
    Ok(Entry {
        id: LogId::new(e.term, e.index),
        payload,
    })
}

pub fn hard_state_to_pb(hs: HardState) -> pb::HardState {
    pb::HardState {
        term: hs.term.0,
        voted_for: hs.voted_for.map(|n| n.0),
        commit: hs.commit.0,
    }
}

pub fn hard_state_from_pb(hs: pb::HardState) -> HardState {
    HardState {
        term: Term(hs.term),
        voted_for: hs.voted_for.map(NodeId),
        commit: LogIndex(hs.commit),
    }
}

pub fn snapshot_meta_to_pb(m: &SnapshotMeta) -> pb::SnapshotMeta {
    pb::SnapshotMeta {
        last: Some(log_id_to_pb(m.last)),
        membership: Some(membership_to_pb(&m.membership)),
    }
}

pub fn snapshot_meta_from_pb(m: &pb::SnapshotMeta) -> Result<SnapshotMeta, CodecError> {
    let last = m
        .last
        .ok_or_else(|| CodecError("snapshot metadata without last log id".into()))?;
    let membership = m
        .membership
        .as_ref()
        .ok_or_else(|| CodecError("snapshot metadata without membership".into()))?;
    Ok(SnapshotMeta {
        last: log_id_from_pb(last),
        membership: membership_from_pb(membership)?,
    })
}
