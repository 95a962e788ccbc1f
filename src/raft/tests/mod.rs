//! Unit tests of the core through its public inputs (`step`, `tick`,
//! `propose`, `ready`): a node is built from what it would have on disk, fed
//! messages, and its `Ready` is checked.

mod snapshot;

use bytes::Bytes;
use std::time::Duration;

use super::{
    Config, Entry, HardState, Instant, LogId, LogIndex, Membership, Message, MessageBody, NodeId,
    Payload, Persisted, Raft, SnapshotMeta, Term,
};

pub(super) const N0: NodeId = NodeId(0);
pub(super) const N1: NodeId = NodeId(1);

pub(super) fn at(ms: u64) -> Instant {
    Instant(Duration::from_millis(ms))
}

pub(super) fn members() -> Membership {
    Membership::new([NodeId(0), NodeId(1), NodeId(2)])
}

/// The founders' first entry, then one command per term in `terms`
/// (index 2 onwards).
pub(super) fn log(terms: &[u64]) -> Vec<Entry> {
    let mut entries = vec![Entry {
        id: LogId::new(1, 1),
        payload: Payload::Config(members()),
    }];
    for (i, t) in terms.iter().enumerate() {
        let index = i as u64 + 2;
        entries.push(Entry {
            id: LogId::new(*t, index),
            payload: Payload::Command(Bytes::from(format!("{t}/{index}"))),
        });
    }
    entries
}

/// A voter of `members()` restarted in `term` with `entries` on disk.
pub(super) fn node(id: NodeId, term: u64, entries: Vec<Entry>, commit: u64) -> Raft {
    let persisted = Persisted {
        hard_state: HardState {
            term: Term(term),
            voted_for: None,
            commit: LogIndex(commit),
        },
        snapshot: None,
        entries,
    };
    Raft::new(Config::new(id), persisted, at(0))
}

pub(super) fn msg(from: NodeId, to: NodeId, term: u64, body: MessageBody) -> Message {
    Message {
        from,
        to,
        term: Term(term),
        body,
    }
}

/// A whole snapshot in one chunk, covering up to `last`.
pub(super) fn snapshot_msg(last: LogId, round: u64) -> MessageBody {
    MessageBody::Snapshot {
        meta: SnapshotMeta {
            last,
            membership: members(),
        },
        offset: 0,
        data: Bytes::from_static(b"state"),
        done: true,
        round,
    }
}
