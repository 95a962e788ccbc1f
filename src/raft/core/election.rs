//! Elections (Raft §5.2 with pre-vote and leader stickiness): campaigning,
//! voting, counting ballots, and becoming leader — which sets the serving
//! gate from the longest old lease the voters report (lease step 4).

use std::collections::VecDeque;
use std::time::Duration;

use super::Raft;
use super::leader::Leader;
use crate::raft::message::*;
use crate::raft::progress::Progress;
use crate::raft::{Broken, LogId, NodeId, Payload, Term};

/// A vote (or pre-vote) received in the current campaign.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ballot {
    pub(super) granted: bool,
    pub(super) lease_remaining: Duration,
    pub(super) lease_term: Term,
}

impl Raft {
    pub(super) fn on_vote(
        &mut self,
        from: NodeId,
        term: Term,
        last_log: LogId,
        pre_vote: bool,
        transfer: bool,
    ) {
        // A node with an empty log has never been a founding member (they
        // all hold the bootstrap entry) nor caught up as a learner: it may be
        // the empty successor of a voter whose disk was lost, and must not
        // stand in for that voter's vote. Refusing costs no liveness: no
        // configuration can need the vote of a node that holds nothing.
        let log_ok = last_log >= self.log.last_id() && self.log.last_id().index.0 > 0;
        // Two pre-candidates with the same log (the followers of a leader
        // that died, whose connections reset at the same instant): the
        // lower id goes first, so that their elections do not split the
        // votes. Only ever a refusal more, never a grant.
        let yields =
            self.role == Role::PreCandidate && last_log == self.log.last_id() && self.cfg.id < from;
        let granted = if pre_vote {
            term > self.term && log_ok && !self.is_sticky(transfer) && !yields
        } else {
            term == self.term
                && self.voted_for.is_none_or(|v| v == from)
                && log_ok
                && self.leader.is_none()
                && !(self.leader_id.is_some_and(|l| l != from) && self.is_sticky(transfer))
        };
        if granted && !pre_vote {
            self.voted_for = Some(from);
            self.reset_election_deadline();
        }
        let (lease_remaining, lease_term) = self.own_lease_report();
        let reply_term = if pre_vote && granted { term } else { self.term };
        self.msgs.push(Message {
            from: self.cfg.id,
            to: from,
            term: reply_term,
            body: MessageBody::VoteResponse {
                granted,
                pre_vote,
                lease_remaining,
                lease_term,
            },
        });
    }

    /// Leader stickiness: a node that heard from a live leader within T does
    /// not help anyone unseat it (unless the leader itself asked, by
    /// TimeoutNow). A leader whose connection broke (`leader_lost_at`) and
    /// that has been silent for `lost_leader_silence` counts as live no
    /// longer: with the reset alone, a follower that heard the leader's
    /// last heartbeat just before it would help unseat a live leader (the
    /// lease bound this node reports still counts from its last contact).
    pub(super) fn is_sticky(&self, transfer: bool) -> bool {
        if transfer {
            return false;
        }
        let since = self.now.saturating_since(self.last_leader_contact);
        let lost = self.leader_lost_at.is_some() && since >= self.cfg.lost_leader_silence();
        self.leader.is_some()
            || (self.leader_id.is_some() && !lost && since < self.cfg.election_timeout)
    }

    /// What this node reports, as a voter, about the last leader it heard from.
    fn own_lease_report(&self) -> (Duration, Term) {
        let since = self.now.saturating_since(self.last_leader_contact);
        (self.cfg.old_lease_bound(since), self.contact_term)
    }

    pub(super) fn start_pre_vote(&mut self) {
        self.leader_id = None;
        self.leader_lost_at = None;
        self.ballots.clear();
        self.released_term = None;
        self.reset_election_deadline();
        self.set_role(Role::PreCandidate);
        self.events.push(Event::ElectionStarted {
            term: Term(self.term.0 + 1),
            pre_vote: true,
        });
        self.cast_own_ballot();
        let last_log = self.log.last_id();
        let term = Term(self.term.0 + 1);
        for v in self.other_voters() {
            self.msgs.push(Message {
                from: self.cfg.id,
                to: v,
                term,
                body: MessageBody::Vote {
                    last_log,
                    pre_vote: true,
                    transfer: false,
                },
            });
        }
        self.tally();
    }

    pub(super) fn start_election(&mut self, transfer: bool, released_term: Option<Term>) {
        self.term = Term(self.term.0 + 1);
        self.voted_for = Some(self.cfg.id);
        self.leader_id = None;
        self.leader_lost_at = None;
        self.ballots.clear();
        self.released_term = released_term;
        self.reset_election_deadline();
        self.set_role(Role::Candidate);
        self.events.push(Event::ElectionStarted {
            term: self.term,
            pre_vote: false,
        });
        self.cast_own_ballot();
        let last_log = self.log.last_id();
        for v in self.other_voters() {
            self.send(
                v,
                MessageBody::Vote {
                    last_log,
                    pre_vote: false,
                    transfer,
                },
            );
        }
        self.tally();
    }

    fn cast_own_ballot(&mut self) {
        let (lease_remaining, lease_term) = self.own_lease_report();
        self.ballots.insert(
            self.cfg.id,
            Ballot {
                granted: true,
                lease_remaining,
                lease_term,
            },
        );
    }

    fn other_voters(&self) -> Vec<NodeId> {
        self.log
            .membership()
            .voters
            .iter()
            .copied()
            .filter(|v| *v != self.cfg.id)
            .collect()
    }

    pub(super) fn on_vote_response(
        &mut self,
        from: NodeId,
        term: Term,
        pre_vote: bool,
        ballot: Ballot,
    ) {
        let expected = match self.role {
            Role::PreCandidate => pre_vote && (term == Term(self.term.0 + 1) || !ballot.granted),
            Role::Candidate => !pre_vote && term == self.term,
            _ => false,
        };
        if !expected || !self.log.membership().is_voter(from) {
            return;
        }
        self.ballots.insert(from, ballot);
        self.tally();
    }

    fn tally(&mut self) {
        let m = self.log.membership();
        let granted = m
            .voters
            .iter()
            .filter(|v| self.ballots.get(v).is_some_and(|b| b.granted))
            .count();
        let denied = m
            .voters
            .iter()
            .filter(|v| self.ballots.get(v).is_some_and(|b| !b.granted))
            .count();
        if granted >= m.quorum() {
            match self.role {
                Role::PreCandidate => self.start_election(false, None),
                Role::Candidate => self.become_leader(),
                _ => {}
            }
        } else if denied > m.voters.len() - m.quorum() {
            self.become_follower(self.term, None);
        }
    }

    fn become_leader(&mut self) {
        // Wait out the longest lease our voters may still have granted.
        let released = self.released_term;
        let wait = self
            .ballots
            .values()
            .filter(|b| b.granted && released.is_none_or(|t| b.lease_term > t))
            .map(|b| b.lease_remaining)
            .max()
            .unwrap_or(Duration::ZERO);
        let wait = if self.cfg.broken == Broken::IgnoreOldLease {
            Duration::ZERO
        } else {
            wait
        };
        self.ballots.clear();
        self.released_term = None;
        self.leader_id = Some(self.cfg.id);
        self.leader_lost_at = None;
        let now = self.now;
        self.serve_after = self.serve_after.max(now + wait);
        let next = self.log.last_index().next();
        let progress = self
            .log
            .membership()
            .members()
            .filter(|id| *id != self.cfg.id)
            .map(|id| (id, Progress::new(next)))
            .collect();
        self.leader = Some(Leader {
            progress,
            round: 0,
            round_starts: VecDeque::new(),
            acked_round: 0,
            last_quorum_contact: now,
            lease_expiry: None,
            lease_revoked: false,
            next_heartbeat: now,
            transfer: None,
            pending_reads: VecDeque::new(),
            pending_broadcast: false,
        });
        self.set_role(Role::Leader);
        self.events.push(Event::LeaderElected {
            term: self.term,
            wait_for_old_lease: wait,
        });
        self.log.append(self.term, Payload::Noop);
        self.start_round();
        self.maybe_commit();
    }
}
