//! Leadership hand-offs, decided here so that the simulator runs the same
//! rules as the node: a transfer a client asked for is answered once the
//! target leads or the transfer fails, and a stopping node takes no new
//! requests, hands leadership to its best successor, and may stop once
//! another node leads or its grace period has run out.

use crate::raft::{Instant, NodeId, ProposeError};
use std::time::Duration;

/// Longest wait for a requested transfer's outcome. The core itself gives
/// up after an election timeout (an `Event::TransferAborted`), so this only
/// bounds an outcome that was never decided.
pub const TRANSFER_LIMIT: Duration = Duration::from_secs(5);

/// What [`super::Replica::stop`] did about leadership, for the log.
#[derive(Debug, PartialEq)]
pub enum StopHandoff {
    /// `stop` had been called before; nothing changed.
    AlreadyStopping,
    /// This node does not lead: nothing to hand off.
    NotLeader,
    /// This node leads alone: no voter to hand off to.
    NoSuccessor,
    /// A transfer to this node started.
    TransferTo(NodeId),
    /// The core refused a transfer to this node.
    Refused(NodeId, ProposeError),
}

/// A requested leadership transfer whose caller waits for its outcome.
pub(super) struct PendingTransfer<T> {
    pub to: NodeId,
    pub give_up_at: Instant,
    pub caller: T,
}

/// How a pending transfer stands after the latest batch or tick.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum TransferOutcome {
    /// The target leads.
    Done,
    /// The transfer failed, for this reason.
    Failed(String),
    /// Not decided yet.
    Waiting,
}

/// Judges a pending transfer to `to` by node `me`: `leader` is the leader
/// the core knows, `aborted` whether the core gave the transfer up, `now`
/// the time if known (a batch without a tick does not check the limit).
pub(super) fn judge(
    to: NodeId,
    me: NodeId,
    leader: Option<NodeId>,
    aborted: bool,
    give_up_at: Instant,
    now: Option<Instant>,
) -> TransferOutcome {
    match leader {
        Some(l) if l == to => TransferOutcome::Done,
        _ if aborted => TransferOutcome::Failed(format!(
            "node {to} did not take over within the election timeout"
        )),
        Some(l) if l != me => {
            TransferOutcome::Failed(format!("node {l} took over instead of node {to}"))
        }
        _ if now.is_some_and(|now| now > give_up_at) => {
            TransferOutcome::Failed(format!("node {to} did not take over in {TRANSFER_LIMIT:?}"))
        }
        _ => TransferOutcome::Waiting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant(Duration::from_millis(ms))
    }

    #[test]
    fn a_transfer_is_done_when_the_target_leads_and_failed_otherwise() {
        let (me, to, other) = (NodeId(0), NodeId(1), NodeId(2));
        let limit = at(5_000);
        let judge_at = |leader, aborted, now| judge(to, me, leader, aborted, limit, now);
        assert_eq!(judge_at(Some(to), false, None), TransferOutcome::Done);
        // Once the target leads, a late abort or the limit change nothing.
        assert_eq!(
            judge_at(Some(to), true, Some(at(9_000))),
            TransferOutcome::Done
        );
        assert_eq!(
            judge_at(Some(me), false, Some(at(1_000))),
            TransferOutcome::Waiting
        );
        assert_eq!(judge_at(None, false, None), TransferOutcome::Waiting);
        assert!(
            matches!(judge_at(Some(me), true, None), TransferOutcome::Failed(w) if w.contains("election timeout"))
        );
        assert!(
            matches!(judge_at(Some(other), false, None), TransferOutcome::Failed(w) if w.contains("node 2 took over"))
        );
        assert!(
            matches!(judge_at(Some(me), false, Some(at(5_001))), TransferOutcome::Failed(w) if w.contains("5s"))
        );
        // Without a time, the limit is not judged.
        assert_eq!(judge_at(Some(me), false, None), TransferOutcome::Waiting);
    }
}
