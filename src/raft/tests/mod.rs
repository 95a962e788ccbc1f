//! Unit tests of the core through its public inputs (`step`, `tick`,
//! `propose`, `ready`): a node is built from what it would have on disk, fed
//! messages, and its `Ready` is checked.

mod gate;
mod heartbeat;
mod hostile;
mod snapshot;

use bytes::Bytes;
use std::time::Duration;

use super::{
    Config, Entry, HardState, Instant, LogId, LogIndex, Membership, Message, MessageBody, NodeId,
    Payload, Persisted, Raft, Role, SnapshotMeta, Term,
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
        payload: Payload::config(members()),
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

/// Makes `r` (n0) win the next term at `now` with n1's vote, n1 reporting
/// that an old lease may still run for `report`.
pub(super) fn elect(r: &mut Raft, report: Duration, now: Instant) {
    r.tick(now);
    assert_eq!(r.role(), Role::PreCandidate);
    let term = r.term().0 + 1;
    let vote = |pre_vote, lease_remaining| MessageBody::VoteResponse {
        granted: true,
        pre_vote,
        lease_remaining,
        lease_term: Term(term - 1),
    };
    r.step(msg(N1, N0, term, vote(true, Duration::ZERO)), now);
    assert_eq!(r.role(), Role::Candidate);
    r.step(msg(N1, N0, term, vote(false, report)), now);
    assert_eq!(r.role(), Role::Leader);
}

/// n0 leading term 2 of `members()` at 1 s (its log: the founders' entry
/// and its NO-OP at index 2), after the first `ready()`.
pub(super) fn leader(report: Duration) -> Raft {
    let mut r = node(N0, 1, log(&[]), 1);
    settled(&mut r);
    elect(&mut r, report, at(1000));
    settled(&mut r);
    r
}

/// `ready()`, advanced at once as if all it asked to persist were durable.
pub(super) fn settled(r: &mut Raft) -> crate::raft::Ready {
    let ready = r.ready();
    r.advance(ready.durable);
    ready
}

pub(super) fn ack(from: NodeId, term: u64, match_index: u64, round: u64) -> Message {
    msg(
        from,
        N0,
        term,
        MessageBody::AppendResponse {
            success: true,
            match_index: LogIndex(match_index),
            conflict: LogId::default(),
            round,
        },
    )
}

pub(super) fn dropped(events: &[super::Event]) -> Vec<&'static str> {
    events
        .iter()
        .filter_map(|e| match e {
            super::Event::MessageDropped { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect()
}
