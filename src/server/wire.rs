//! Conversions between the consensus core's messages and the wire
//! (`pb::PeerMessage`). Data from the network is validated here, once.
//!
//! Entries, memberships and snapshot metadata use `storage`'s codec, so the
//! wire and the WAL share one definition of the format.

use crate::pb::{self, peer_message::Body};
use crate::raft::{LogId, LogIndex, Message, MessageBody, NodeId, SnapshotMeta, Term};
use crate::storage::{
    entry_from_pb, entry_to_pb, log_id_from_pb, log_id_to_pb, snapshot_meta_from_pb,
    snapshot_meta_to_pb,
};
use std::time::Duration;

/// Why a message from a peer was refused.
#[derive(Debug, thiserror::Error)]
#[error("malformed peer message: {0}")]
pub struct WireError(pub String);

fn bad(msg: impl Into<String>) -> WireError {
    WireError(msg.into())
}

/// No honest term, index or offset comes near this (2^62: at a million
/// entries a second, 146,000 years of log), so arithmetic on any value that
/// passed `plausible` (`index + 1`, `offset + len`) cannot overflow.
const MAX_PLAUSIBLE: u64 = 1 << 62;

fn plausible(value: u64, what: &str) -> Result<u64, WireError> {
    if value > MAX_PLAUSIBLE {
        return Err(bad(format!("{what} {value} is out of range")));
    }
    Ok(value)
}

fn log_id(id: Option<pb::LogId>) -> Result<LogId, WireError> {
    let id = id.map_or_else(LogId::default, log_id_from_pb);
    plausible(id.term.0, "term")?;
    plausible(id.index.0, "index")?;
    Ok(id)
}

fn meta_from_pb(m: Option<pb::SnapshotMeta>) -> Result<SnapshotMeta, WireError> {
    let m = m.ok_or_else(|| bad("snapshot without metadata"))?;
    let meta = snapshot_meta_from_pb(&m).map_err(|e| bad(e.0))?;
    plausible(meta.last.term.0, "snapshot term")?;
    plausible(meta.last.index.0, "snapshot index")?;
    Ok(meta)
}

/// A core message as it goes on the wire.
pub fn message_to_pb(m: &Message) -> pb::PeerMessage {
    let (from, to, term) = (m.from.0, m.to.0, m.term.0);
    let body = match &m.body {
        MessageBody::Append {
            prev,
            entries,
            commit,
            round,
        } => Body::Append(pb::AppendEntriesRequest {
            from,
            to,
            term,
            prev: Some(log_id_to_pb(*prev)),
            entries: entries.iter().map(entry_to_pb).collect(),
            commit: commit.0,
            round: *round,
        }),
        MessageBody::AppendResponse {
            success,
            match_index,
            conflict,
            round,
        } => Body::AppendResponse(pb::AppendEntriesResponse {
            from,
            to,
            term,
            success: *success,
            match_index: match_index.0,
            conflict: Some(log_id_to_pb(*conflict)),
            round: *round,
        }),
        MessageBody::Vote {
            last_log,
            pre_vote,
            transfer,
        } => Body::Vote(pb::RequestVoteRequest {
            from,
            to,
            term,
            last_log: Some(log_id_to_pb(*last_log)),
            pre_vote: *pre_vote,
            transfer: *transfer,
        }),
        MessageBody::VoteResponse {
            granted,
            pre_vote,
            lease_remaining,
            lease_term,
        } => Body::VoteResponse(pb::RequestVoteResponse {
            from,
            to,
            term,
            granted: *granted,
            pre_vote: *pre_vote,
            lease_remaining_nanos: u64::try_from(lease_remaining.as_nanos()).unwrap_or(u64::MAX),
            lease_term: lease_term.0,
        }),
        MessageBody::Snapshot {
            meta,
            offset,
            data,
            done,
            round,
        } => Body::Snapshot(pb::InstallSnapshotRequest {
            from,
            to,
            term,
            meta: Some(snapshot_meta_to_pb(meta)),
            offset: *offset,
            data: data.clone(),
            done: *done,
            round: *round,
        }),
        MessageBody::SnapshotResponse {
            last_index,
            next_offset,
            done,
            round,
        } => Body::SnapshotResponse(pb::InstallSnapshotResponse {
            from,
            to,
            term,
            last_index: last_index.0,
            next_offset: *next_offset,
            done: *done,
            round: *round,
        }),
        MessageBody::TimeoutNow { lease_released } => Body::TimeoutNow(pb::TimeoutNowRequest {
            from,
            to,
            term,
            lease_released: *lease_released,
        }),
        MessageBody::Heartbeat { commit, round } => Body::Heartbeat(pb::HeartbeatRequest {
            from,
            to,
            term,
            commit: commit.0,
            round: *round,
        }),
        MessageBody::HeartbeatResponse { round } => {
            Body::HeartbeatResponse(pb::HeartbeatResponse {
                from,
                to,
                term,
                round: *round,
            })
        }
    };
    pb::PeerMessage { body: Some(body) }
}

/// The sender a wire message names (not validated; for bookkeeping only).
pub fn sender_of(m: &pb::PeerMessage) -> Option<u64> {
    Some(match m.body.as_ref()? {
        Body::Append(r) => r.from,
        Body::AppendResponse(r) => r.from,
        Body::Vote(r) => r.from,
        Body::VoteResponse(r) => r.from,
        Body::Snapshot(r) => r.from,
        Body::SnapshotResponse(r) => r.from,
        Body::TimeoutNow(r) => r.from,
        Body::Heartbeat(r) => r.from,
        Body::HeartbeatResponse(r) => r.from,
    })
}

/// A wire message as the core takes it, or why it is malformed.
pub fn message_from_pb(m: pb::PeerMessage) -> Result<Message, WireError> {
    let msg = |from: u64, to: u64, term: u64, body| {
        if from == to {
            return Err(bad(format!("message from node {from} to itself")));
        }
        Ok(Message {
            from: NodeId(from),
            to: NodeId(to),
            term: Term(plausible(term, "term")?),
            body,
        })
    };
    match m.body.ok_or_else(|| bad("empty peer message"))? {
        Body::Append(r) => {
            let entries = r
                .entries
                .into_iter()
                .map(|e| entry_from_pb(e).map_err(|e| bad(e.0)))
                .collect::<Result<Vec<_>, _>>()?;
            let prev = log_id(r.prev)?;
            let mut term = prev.term;
            for (i, e) in entries.iter().enumerate() {
                if e.id.index.0 != prev.index.0 + 1 + i as u64 {
                    return Err(bad("append entries are not consecutive after prev"));
                }
                // Terms never decrease along a log, and a leader sends no
                // entry from a term after its own.
                if e.id.term < term || e.id.term.0 > r.term {
                    return Err(bad("append entry terms are out of order"));
                }
                term = e.id.term;
            }
            msg(
                r.from,
                r.to,
                r.term,
                MessageBody::Append {
                    prev,
                    entries,
                    commit: LogIndex(plausible(r.commit, "commit index")?),
                    round: r.round,
                },
            )
        }
        Body::AppendResponse(r) => msg(
            r.from,
            r.to,
            r.term,
            MessageBody::AppendResponse {
                success: r.success,
                match_index: LogIndex(plausible(r.match_index, "match index")?),
                conflict: log_id(r.conflict)?,
                round: r.round,
            },
        ),
        Body::Vote(r) => msg(
            r.from,
            r.to,
            r.term,
            MessageBody::Vote {
                last_log: log_id(r.last_log)?,
                pre_vote: r.pre_vote,
                transfer: r.transfer,
            },
        ),
        Body::VoteResponse(r) => msg(
            r.from,
            r.to,
            r.term,
            MessageBody::VoteResponse {
                granted: r.granted,
                pre_vote: r.pre_vote,
                lease_remaining: Duration::from_nanos(r.lease_remaining_nanos),
                lease_term: Term(plausible(r.lease_term, "lease term")?),
            },
        ),
        Body::Snapshot(r) => msg(
            r.from,
            r.to,
            r.term,
            MessageBody::Snapshot {
                meta: meta_from_pb(r.meta)?,
                offset: plausible(r.offset, "snapshot offset")?,
                data: r.data,
                done: r.done,
                round: r.round,
            },
        ),
        Body::SnapshotResponse(r) => msg(
            r.from,
            r.to,
            r.term,
            MessageBody::SnapshotResponse {
                last_index: LogIndex(plausible(r.last_index, "snapshot index")?),
                next_offset: plausible(r.next_offset, "snapshot offset")?,
                done: r.done,
                round: r.round,
            },
        ),
        Body::TimeoutNow(r) => msg(
            r.from,
            r.to,
            r.term,
            MessageBody::TimeoutNow {
                lease_released: r.lease_released,
            },
        ),
        Body::Heartbeat(r) => msg(
            r.from,
            r.to,
            r.term,
            MessageBody::Heartbeat {
                commit: LogIndex(plausible(r.commit, "commit index")?),
                round: r.round,
            },
        ),
        Body::HeartbeatResponse(r) => msg(
            r.from,
            r.to,
            r.term,
            MessageBody::HeartbeatResponse { round: r.round },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{Entry, Membership, Payload};
    use bytes::Bytes;

    fn round_trip(m: Message) {
        let back = message_from_pb(message_to_pb(&m)).unwrap();
        assert_eq!(format!("{back:?}"), format!("{m:?}"));
    }

    #[test]
    fn every_message_kind_round_trips() {
        let e = |i, p| Entry {
            id: LogId::new(2, i),
            payload: p,
        };
        let base = |body| Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(3),
            body,
        };
        round_trip(base(MessageBody::Append {
            prev: LogId::new(1, 4),
            entries: vec![
                e(5, Payload::Noop),
                e(6, Payload::Command(Bytes::from_static(b"x"))),
                e(7, Payload::config(Membership::new([NodeId(0), NodeId(1)]))),
            ],
            commit: LogIndex(4),
            round: 9,
        }));
        round_trip(base(MessageBody::AppendResponse {
            success: false,
            match_index: LogIndex(3),
            conflict: LogId::new(1, 2),
            round: 9,
        }));
        round_trip(base(MessageBody::Vote {
            last_log: LogId::new(2, 7),
            pre_vote: true,
            transfer: false,
        }));
        round_trip(base(MessageBody::VoteResponse {
            granted: true,
            pre_vote: false,
            lease_remaining: Duration::from_millis(120),
            lease_term: Term(2),
        }));
        round_trip(base(MessageBody::Snapshot {
            meta: SnapshotMeta {
                last: LogId::new(2, 7),
                membership: Membership::new([NodeId(0)]),
            },
            offset: 0,
            data: Bytes::from_static(b"snap"),
            done: true,
            round: 1,
        }));
        round_trip(base(MessageBody::SnapshotResponse {
            last_index: LogIndex(7),
            next_offset: 4,
            done: true,
            round: 1,
        }));
        round_trip(base(MessageBody::TimeoutNow {
            lease_released: true,
        }));
        round_trip(base(MessageBody::Heartbeat {
            commit: LogIndex(6),
            round: 9,
        }));
        round_trip(base(MessageBody::HeartbeatResponse { round: 9 }));
    }

    #[test]
    fn malformed_messages_are_refused() {
        assert!(message_from_pb(pb::PeerMessage { body: None }).is_err());
        let gap = pb::AppendEntriesRequest {
            prev: Some(pb::LogId { term: 1, index: 1 }),
            entries: vec![entry_to_pb(&Entry {
                id: LogId::new(1, 3),
                payload: Payload::Noop,
            })],
            ..Default::default()
        };
        assert!(
            message_from_pb(pb::PeerMessage {
                body: Some(Body::Append(gap))
            })
            .is_err()
        );
    }

    fn refused(body: Body) -> bool {
        message_from_pb(pb::PeerMessage { body: Some(body) }).is_err()
    }

    #[test]
    fn implausible_numbers_and_shapes_are_refused_not_passed_on() {
        // The rejection with a huge conflict index that reached an `expect`.
        let huge_conflict = pb::AppendEntriesResponse {
            from: 1,
            to: 2,
            term: 3,
            success: false,
            conflict: Some(pb::LogId {
                term: 1,
                index: u64::MAX,
            }),
            ..Default::default()
        };
        assert!(refused(Body::AppendResponse(huge_conflict)));
        let fine = pb::AppendEntriesResponse {
            conflict: Some(pb::LogId { term: 1, index: 9 }),
            ..huge_conflict
        };
        assert!(!refused(Body::AppendResponse(fine)));
        assert!(refused(Body::AppendResponse(pb::AppendEntriesResponse {
            match_index: u64::MAX,
            ..fine
        })));
        assert!(refused(Body::AppendResponse(pb::AppendEntriesResponse {
            to: 1,
            ..fine
        })));
        // prev.index + 1 would overflow.
        let overflow = pb::AppendEntriesRequest {
            from: 1,
            to: 2,
            term: 3,
            prev: Some(pb::LogId {
                term: 1,
                index: u64::MAX,
            }),
            entries: vec![entry_to_pb(&Entry {
                id: LogId::new(1, 0),
                payload: Payload::Noop,
            })],
            ..Default::default()
        };
        assert!(refused(Body::Append(overflow)));
        // Entry terms must not decrease nor pass the leader's term.
        let terms = |a: u64, b: u64| pb::AppendEntriesRequest {
            from: 1,
            to: 2,
            term: 3,
            prev: Some(pb::LogId { term: 1, index: 4 }),
            entries: [(a, 5), (b, 6)]
                .iter()
                .map(|&(t, i)| {
                    entry_to_pb(&Entry {
                        id: LogId::new(t, i),
                        payload: Payload::Noop,
                    })
                })
                .collect(),
            ..Default::default()
        };
        assert!(!refused(Body::Append(terms(2, 3))));
        assert!(refused(Body::Append(terms(3, 2))));
        assert!(refused(Body::Append(terms(2, 4))));
        assert!(refused(Body::SnapshotResponse(
            pb::InstallSnapshotResponse {
                from: 1,
                to: 2,
                next_offset: u64::MAX,
                ..Default::default()
            }
        )));
    }
}
