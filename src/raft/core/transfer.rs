//! Leadership transfer: the leader gives its lease up, brings the
//! successor up to date and tells it to campaign at once (`TimeoutNow`).

use super::Raft;
use crate::raft::message::*;
use crate::raft::{Instant, NodeId, Term};

#[derive(Debug)]
pub(super) struct Transfer {
    pub(super) to: NodeId,
    pub(super) deadline: Instant,
    pub(super) sent: bool,
}

impl Raft {
    pub fn transfer_leadership(&mut self, to: NodeId, now: Instant) -> Result<(), ProposeError> {
        self.advance_clock(now);
        if self.leader.is_none() {
            return Err(self.not_leader());
        }
        if to == self.cfg.id {
            return Ok(());
        }
        if !self.log.membership().is_voter(to) {
            return Err(ProposeError::Invalid(format!("node {to} is not a voter")));
        }
        let deadline = now + self.cfg.election_timeout;
        let l = self.leader_mut();
        if l.transfer.is_some() {
            return Err(ProposeError::Busy(
                "a leadership transfer is under way".into(),
            ));
        }
        // Give the lease up first, so the successor need not wait for it.
        l.lease_revoked = true;
        l.transfer = Some(Transfer {
            to,
            deadline,
            sent: false,
        });
        self.events.push(Event::TransferStarted { to });
        self.maybe_send_timeout_now();
        self.send_append(to, false);
        self.after_input();
        Ok(())
    }

    pub(super) fn maybe_send_timeout_now(&mut self) {
        let last = self.log.last_index();
        let now = self.now;
        let Some(l) = self.leader.as_mut() else {
            return;
        };
        let Some(t) = l.transfer.as_mut() else {
            return;
        };
        if t.sent || l.progress.get(&t.to).is_none_or(|p| p.match_index < last) {
            return;
        }
        t.sent = true;
        let to = t.to;
        let lease_released = l.lease_revoked && now >= self.serve_after;
        self.send(to, MessageBody::TimeoutNow { lease_released });
    }

    pub(super) fn on_timeout_now(&mut self, from: NodeId, term: Term, lease_released: bool) {
        if self.leader_id != Some(from) || !self.is_voter() || self.leader.is_some() {
            return;
        }
        self.start_election(true, lease_released.then_some(term));
    }
}
