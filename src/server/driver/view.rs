//! What the node loop shows outside: status and members answers, readiness,
//! metrics and one structured log event per core event.

use super::Driver;
use crate::pb;
use crate::raft::{Event, NodeId, Role};

/// `/readyz` fails while more committed entries than this wait to be applied.
const READY_MAX_LAG: u64 = 1000;

impl Driver {
    pub(super) fn status(&self) -> pb::StatusResponse {
        let s = self.raft().status(self.now());
        let leader_address = s
            .leader
            .and_then(|l| self.client_addrs.get(&l.0).cloned())
            .unwrap_or_default();
        pb::StatusResponse {
            id: s.id.0,
            cluster_id: self.cluster_id.clone(),
            role: s.role.as_str().to_string(),
            term: s.term.0,
            leader: s.leader.map(|l| l.0),
            leader_address,
            commit_index: s.commit.0,
            applied_index: self.replica.applied(),
            last_index: s.last_index.0,
            lease_remaining_seconds: s.lease_remaining.map_or(0.0, |d| d.as_secs_f64()),
            membership: Some(crate::storage::membership_to_pb(&s.membership)),
            progress: s
                .progress
                .iter()
                .map(|p| pb::PeerProgress {
                    id: p.id.0,
                    match_index: p.match_index.0,
                    next_index: p.next_index.0,
                    state: p.state.to_string(),
                })
                .collect(),
            client_address: self
                .client_addrs
                .get(&self.id.0)
                .cloned()
                .unwrap_or_default(),
            snapshot_index: s.snapshot_index.0.max(self.replica.snapshot_index()),
            // Filled in by the gRPC layer, which sees the peers' refusals
            // and the process.
            peer_problems: Vec::new(),
            pid: 0,
            version: String::new(),
            uptime_seconds: 0.0,
            state_hashes: self
                .replica
                .state_hashes()
                .into_iter()
                .map(|(index, hash)| pb::StateHash { index, hash })
                .collect(),
            state_mismatches: self.replica.state_mismatches(),
        }
    }

    pub(super) fn members(&self) -> pb::MembersResponse {
        let m = self.raft().membership();
        let info = |id: NodeId, voter: bool| pb::MemberInfo {
            id: id.0,
            client_address: self.client_addrs.get(&id.0).cloned().unwrap_or_default(),
            peer_address: self.peer_addrs.get(&id.0).cloned().unwrap_or_default(),
            voter,
        };
        let mut members: Vec<pb::MemberInfo> = m.voters.iter().map(|&v| info(v, true)).collect();
        members.extend(m.learners.iter().map(|&l| info(l, false)));
        pb::MembersResponse {
            members,
            leader: self.raft().leader().map(|l| l.0),
        }
    }

    /// Ready: a member, a leader known, and applied close to commit.
    pub(super) fn readiness(&self) -> Result<(), String> {
        if !self.raft().membership().contains(self.id) {
            return Err(format!("node {} is not a member of the cluster", self.id));
        }
        if self.raft().leader().is_none() {
            return Err("no leader known".into());
        }
        let commit = self.raft().commit_index().0;
        let lag = commit.saturating_sub(self.replica.applied());
        if lag > READY_MAX_LAG {
            return Err(format!(
                "applied index {} is {lag} entries behind commit {commit}",
                self.replica.applied()
            ));
        }
        Ok(())
    }

    /// After a turn of the loop: notes a leader change at once, and (after a
    /// tick, i.e. every heartbeat/2, not on every turn under load) refreshes
    /// the gauges, which need a full status of the core.
    pub(super) fn observe(&mut self, ticked: bool) {
        let leader = self.raft().leader();
        if leader != self.last_leader {
            if leader.is_some() {
                self.metrics.leader_changes.inc();
            }
            tracing::info!(leader = ?leader.map(|l| l.0), term = self.raft().term().0, "leader changed");
            self.last_leader = leader;
        }
        if ticked {
            self.refresh_gauges();
        }
    }

    fn refresh_gauges(&mut self) {
        let now = self.now();
        let s = self.raft().status(now);
        let m = &self.metrics;
        m.term.set(s.term.0 as i64);
        m.is_leader.set(i64::from(s.role == Role::Leader));
        m.has_leader.set(i64::from(s.leader.is_some()));
        m.voters.set(s.membership.voters.len() as i64);
        m.ready.set(i64::from(self.readiness().is_ok()));
        m.commit_index.set(s.commit.0 as i64);
        m.applied_index.set(self.replica.applied() as i64);
        m.commit_lag
            .set(s.commit.0.saturating_sub(self.replica.applied()) as i64);
        m.keys.set(self.replica.state_machine().len() as i64);
        if s.role == Role::Leader {
            for p in &s.progress {
                if p.id != self.id {
                    let lag = s.last_index.0.saturating_sub(p.match_index.0);
                    m.follower_lag_entries
                        .with_label_values(&[&p.id.0.to_string()])
                        .set(lag as i64);
                }
            }
        } else if self.last_leader_gauges {
            m.follower_lag_entries.reset();
        }
        self.last_leader_gauges = s.role == Role::Leader;
    }

    /// One structured log event per core event, and the counters they move.
    pub(super) fn record_event(&self, e: &Event) {
        match e {
            Event::RoleChanged { role, term, leader } => {
                tracing::info!(role = role.as_str(), term = term.0, leader = ?leader.map(|l| l.0), "role changed")
            }
            Event::ElectionStarted { term, pre_vote } => {
                if !pre_vote {
                    self.metrics.elections_started.inc();
                }
                tracing::info!(term = term.0, pre_vote, "election started")
            }
            Event::LeaderElected {
                term,
                wait_for_old_lease,
            } => tracing::info!(
                term = term.0,
                wait_for_old_lease_ms = wait_for_old_lease.as_millis() as u64,
                "elected leader"
            ),
            Event::LeaseAcquired { term } => tracing::info!(term = term.0, "lease acquired"),
            Event::LeaseLost { term } => tracing::info!(term = term.0, "lease lost"),
            Event::SteppedDown { term, reason } => {
                tracing::warn!(term = term.0, reason, "stepped down")
            }
            Event::MembershipChanged { index, membership } => tracing::info!(
                index = index.0,
                voters = ?membership.voters.iter().map(|v| v.0).collect::<Vec<_>>(),
                learners = ?membership.learners.iter().map(|v| v.0).collect::<Vec<_>>(),
                "membership changed"
            ),
            Event::SnapshotInstalled { last } => {
                tracing::info!(
                    index = last.index.0,
                    term = last.term.0,
                    "snapshot installed"
                )
            }
            Event::LogCompacted { last } => {
                tracing::info!(index = last.index.0, term = last.term.0, "log compacted")
            }
            Event::TransferStarted { to } => {
                tracing::info!(to = to.0, "leadership transfer started")
            }
            Event::MessageDropped { from, kind, reason } => {
                tracing::warn!(from = from.0, kind, reason, "peer message dropped")
            }
            Event::LeaderConnectionLost { leader } => {
                tracing::info!(
                    leader = leader.0,
                    "connection to the leader lost: campaigning unless it is heard from again"
                )
            }
            Event::TransferAborted { to } => {
                tracing::warn!(to = to.0, "leadership transfer aborted")
            }
        }
    }
}
