//! Membership changes, one server at a time (dissertation §4.1), and a
//! leader handing over once its own removal is committed.

use super::Raft;
use crate::raft::message::*;
use crate::raft::progress::Progress;
use crate::raft::{ConfChange, Instant, LogId, Payload};
use bytes::Bytes;

impl Raft {
    /// Appends the membership `change`, with the application's `context`
    /// (opaque to the core, handed back with the committed entry).
    pub fn propose_conf_change(
        &mut self,
        change: ConfChange,
        context: Bytes,
        now: Instant,
    ) -> Result<LogId, ProposeError> {
        self.advance_clock(now);
        self.check_accepting()?;
        if self.log.membership_index() > self.log.committed() {
            return Err(ProposeError::Busy(
                "a membership change is still being committed".into(),
            ));
        }
        if self.log.term_at(self.log.committed()) != Some(self.term) {
            return Err(ProposeError::Busy(
                "the new leader has not committed an entry of its term yet".into(),
            ));
        }
        let next = change
            .apply(self.log.membership())
            .map_err(ProposeError::Invalid)?;
        if let ConfChange::Promote(id) = change {
            let caught_up = self
                .leader_ref()
                .progress
                .get(&id)
                .is_some_and(|p| p.match_index >= self.log.committed());
            if !caught_up {
                return Err(ProposeError::LearnerBehind(id));
            }
        }
        let payload = Payload::Config {
            membership: next,
            context,
        };
        let id = self.log.append(self.term, payload);
        self.on_membership_change();
        self.leader_mut().pending_broadcast = true;
        self.after_input();
        Ok(id)
    }

    pub(super) fn on_membership_change(&mut self) {
        self.membership_seen = self.log.membership_index();
        let membership = self.log.membership().clone();
        self.events.push(Event::MembershipChanged {
            index: self.membership_seen,
            membership: membership.clone(),
        });
        if let Some(l) = self.leader.as_mut() {
            let next = self.log.last_index().next();
            l.progress.retain(|id, _| membership.contains(*id));
            for id in membership.members() {
                if id != self.cfg.id {
                    l.progress.entry(id).or_insert_with(|| Progress::new(next));
                }
            }
        } else {
            let role = self.follower_role();
            if role != self.role && matches!(self.role, Role::Follower | Role::Learner) {
                self.set_role(role);
            }
        }
    }

    /// A leader whose own removal is committed hands over and steps down.
    pub(super) fn maybe_hand_off_after_removal(&mut self) {
        if self.is_voter() || self.log.membership_index() > self.log.committed() {
            return;
        }
        let serving = self.now >= self.serve_after;
        let successor = self
            .leader_ref()
            .progress
            .iter()
            .filter(|(id, _)| self.log.membership().is_voter(**id))
            .max_by_key(|(_, p)| p.match_index)
            .map(|(id, _)| *id);
        self.leader_mut().lease_revoked = true;
        if let Some(to) = successor {
            self.send(
                to,
                MessageBody::TimeoutNow {
                    lease_released: serving,
                },
            );
        }
        self.events.push(Event::SteppedDown {
            term: self.term,
            reason: "removed from the membership",
        });
        self.become_follower(self.term, None);
    }
}
