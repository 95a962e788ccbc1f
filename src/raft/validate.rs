//! Checks on every peer message before the core acts on it. A message from
//! the network may come from a buggy or
//! misconfigured peer (two processes with one node id) or be corrupt: one
//! that no correct peer could send is dropped and reported as
//! `Event::MessageDropped`, never allowed to reach an `expect`, an overflow
//! or an invariant check of the core.

use std::time::Duration;

use super::{LogIndex, Message, MessageBody, NodeId, Term};

/// What the checks need to know about the receiving node.
pub(crate) struct Receiver {
    pub id: NodeId,
    pub term: Term,
    /// The longest old-lease bound a correct voter can report: L(1 + ρ).
    pub max_lease_report: Duration,
    /// Set while the receiver leads.
    pub leader: Option<LeaderView>,
}

pub(crate) struct LeaderView {
    pub last_index: LogIndex,
    /// The last index of the leader's current snapshot (0 if none).
    pub snapshot_index: LogIndex,
    /// The leader's current heartbeat round.
    pub round: u64,
}

/// Why `msg` cannot come from a correct peer, if it cannot.
pub(crate) fn check(msg: &Message, me: &Receiver) -> Result<(), &'static str> {
    use MessageBody::*;
    if msg.from == me.id {
        return Err("sent under our own node id (two nodes share an id?)");
    }
    if msg.term.0 == u64::MAX {
        return Err("term at its maximum");
    }
    let same_term_leader = if msg.term == me.term {
        me.leader.as_ref()
    } else {
        None
    };
    match &msg.body {
        Append { prev, entries, .. } => {
            if same_term_leader.is_some() {
                return Err("another leader in our term (two nodes share an id?)");
            }
            if prev.term > msg.term {
                return Err("previous entry from a later term than the message");
            }
            if prev.index.0.checked_add(entries.len() as u64 + 1).is_none() {
                return Err("entry index out of range");
            }
            let mut term = prev.term;
            for (i, e) in entries.iter().enumerate() {
                if e.index().0 != prev.index.0 + 1 + i as u64 {
                    return Err("entries not contiguous after the previous entry");
                }
                if e.term() < term || e.term() > msg.term {
                    return Err("entry terms out of order");
                }
                term = e.term();
            }
        }
        Heartbeat { .. } => {
            if same_term_leader.is_some() {
                return Err("another leader in our term (two nodes share an id?)");
            }
        }
        HeartbeatResponse { round } => {
            if let Some(l) = same_term_leader
                && *round > l.round
            {
                return Err("acknowledges a round not yet sent");
            }
        }
        Snapshot {
            meta, offset, data, ..
        } => {
            if same_term_leader.is_some() {
                return Err("another leader in our term (two nodes share an id?)");
            }
            if meta.last.index.0 == 0 || meta.last.index.0 == u64::MAX {
                return Err("snapshot index out of range");
            }
            if meta.last.term.0 == 0 || meta.last.term > msg.term {
                return Err("snapshot term out of range");
            }
            if meta.membership.voters.is_empty() {
                return Err("snapshot membership without voters");
            }
            if offset.checked_add(data.len() as u64).is_none() {
                return Err("snapshot offset out of range");
            }
        }
        Vote { last_log, .. } => {
            if last_log.term > msg.term {
                return Err("candidate's last entry from a later term than its campaign");
            }
        }
        VoteResponse {
            lease_remaining,
            lease_term,
            ..
        } => {
            if *lease_remaining > me.max_lease_report {
                return Err("reports a lease longer than any lease");
            }
            if *lease_term > msg.term {
                return Err("reports a lease of a later term than its own");
            }
        }
        AppendResponse {
            success,
            match_index,
            conflict,
            round,
        } => {
            if let Some(l) = same_term_leader {
                if *round > l.round {
                    return Err("acknowledges a round not yet sent");
                }
                if *success && *match_index > l.last_index {
                    return Err("acknowledges entries we do not have");
                }
                if !*success && conflict.index > l.last_index.next() {
                    return Err("conflict hint beyond our log");
                }
            }
        }
        SnapshotResponse {
            last_index, round, ..
        } => {
            if let Some(l) = same_term_leader {
                if *round > l.round {
                    return Err("acknowledges a round not yet sent");
                }
                if *last_index > l.snapshot_index {
                    return Err("acknowledges a snapshot we never sent");
                }
            }
        }
        TimeoutNow { .. } => {}
    }
    Ok(())
}
