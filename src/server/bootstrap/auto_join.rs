//! Joining without an operator (`--auto-join`, docs/kubernetes.md): the
//! documented manual recovery of a lost volume (docs/operations.md), done by
//! the empty node itself, and the same steps for a pod added by scaling up.
//!
//! In a StatefulSet every pod shares one template, so no pod can be given
//! `--join` by hand. An empty node that finds an existing cluster asks its
//! leader, through the client API any operator would use:
//! 1. remove this node's old incarnation (voter or learner) if listed;
//! 2. add this incarnation as a learner (it never votes with an empty log);
//! 3. then the caller joins (`discovery`, `Mode::Join`) and starts; once it
//!    runs, [`promote`] asks the leader to make it a voter, which the leader
//!    does only when it has caught up.
//!
//! Steps 1 and 2 run only while the cluster can afford them: the leader
//! holds its lease and enough other voters answer, naming that leader, to
//! form a quorum both before and after the removal. A cluster that lost a
//! majority has no such leader, so it never "recovers" by itself. Each
//! step is logged; the membership (`raftctl members`, `raftctl status`)
//! shows the learner and then the voter. Every step is idempotent, so a
//! crash anywhere only repeats it on the next start.

use super::super::config::Config;
use crate::client::{Client, ClientError, ClientOptions};
use crate::pb;
use std::time::Duration;

/// Pause between attempts while the cluster is not ready for the change.
const RETRY_EVERY: Duration = Duration::from_secs(2);
/// How often the wait for a leader or a quorum is logged.
const LOG_EVERY: u32 = 5;

/// Why a change is not attempted yet.
#[derive(Debug, PartialEq)]
pub enum NotYet {
    NoLeader,
    LeaderWithoutLease(u64),
    /// Voters other than this node that answered naming the leader, and how
    /// many are needed.
    NoQuorum {
        answered: usize,
        needed: usize,
    },
}

impl std::fmt::Display for NotYet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotYet::NoLeader => write!(f, "no leader known"),
            NotYet::LeaderWithoutLease(id) => write!(f, "leader {id} does not hold its lease"),
            NotYet::NoQuorum { answered, needed } => write!(
                f,
                "{answered} other voter(s) answer with the leader, {needed} needed for a quorum without this node"
            ),
        }
    }
}

/// Voters other than `me` that must answer so that a quorum remains both
/// with `me` still counted as a (dead) voter and after its removal.
pub fn others_needed(voters: usize, me_is_voter: bool) -> usize {
    let before = voters / 2 + 1;
    if !me_is_voter {
        return before;
    }
    let after = (voters - 1) / 2 + 1;
    before.max(after)
}

/// Whether the cluster can take a membership change for `me` now. `leader`
/// is the leader's own status; `views` the status of every other voter that
/// answered (the leader's included).
pub fn ready_for_change(
    me: u64,
    members: &pb::MembersResponse,
    leader: Option<&pb::StatusResponse>,
    views: &[pb::StatusResponse],
) -> Result<(), NotYet> {
    let Some(leader) = leader.filter(|s| s.role == "leader") else {
        return Err(NotYet::NoLeader);
    };
    if leader.lease_remaining_seconds <= 0.0 {
        return Err(NotYet::LeaderWithoutLease(leader.id));
    }
    let voters: Vec<u64> = members
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.id)
        .collect();
    let me_is_voter = voters.contains(&me);
    let needed = others_needed(voters.len(), me_is_voter);
    let answered = views
        .iter()
        .filter(|s| s.id != me && voters.contains(&s.id))
        .filter(|s| s.leader == Some(leader.id) && s.term == leader.term)
        .count();
    if answered < needed {
        return Err(NotYet::NoQuorum { answered, needed });
    }
    Ok(())
}

/// A client of the other members (their client addresses).
fn client(config: &Config) -> Result<Client, String> {
    let endpoints = config
        .peers
        .iter()
        .filter(|p| p.id != config.id)
        .map(|p| p.client_addr.clone())
        .collect();
    Client::lazy(
        endpoints,
        ClientOptions {
            tls: config.dial.client.clone(),
            ..ClientOptions::default()
        }
        .with_timeout(Duration::from_secs(5)),
    )
    .map_err(|e| format!("auto-join: {e}"))
}

/// Steps 1 and 2: replace any old incarnation of this node by a learner.
/// Retries until done (peers may be unreachable or leaderless for a while);
/// never gives up on its own, because the alternative is a pod that cannot
/// start at all. Returns the log index of the learner's addition.
pub async fn add_as_learner(config: &Config) -> Result<u64, String> {
    let client = client(config)?;
    let me = config.id;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match try_add_as_learner(config, &client).await {
            Ok(index) => return Ok(index),
            Err(e) => {
                if attempt == 1 || attempt % LOG_EVERY == 0 {
                    tracing::info!(node = me, attempt, reason = %e, "auto-join: waiting before changing the membership");
                }
            }
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

async fn try_add_as_learner(config: &Config, client: &Client) -> Result<u64, String> {
    let me = config.id;
    let members = client.members().await.map_err(|e| e.to_string())?;
    check_cluster(me, client, &members).await?;
    if let Some(old) = members.members.iter().find(|m| m.id == me) {
        tracing::warn!(
            node = me,
            was_voter = old.voter,
            "auto-join: removing this node's old incarnation (its data directory came back empty)"
        );
        let index = client.remove_member(me).await.map_err(|e| e.to_string())?;
        tracing::info!(node = me, index, "auto-join: old incarnation removed");
    }
    let peer_addr = &config.me().peer_addr;
    let client_addr = &config.advertise_client_addr;
    let index = client
        .add_member(me, peer_addr, client_addr, false)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(node = me, index, peer = %peer_addr, "auto-join: added as a learner");
    Ok(index)
}

/// Asks the leader and every voter for their status and applies
/// [`ready_for_change`].
async fn check_cluster(
    me: u64,
    client: &Client,
    members: &pb::MembersResponse,
) -> Result<(), String> {
    let ask = |m: &pb::MemberInfo| {
        let addr = m.client_address.clone();
        async move { client.status(&addr).await.ok() }
    };
    let voters: Vec<&pb::MemberInfo> = members
        .members
        .iter()
        .filter(|m| m.voter && m.id != me)
        .collect();
    let views: Vec<pb::StatusResponse> = futures::future::join_all(voters.iter().map(|m| ask(m)))
        .await
        .into_iter()
        .flatten()
        .collect();
    let leader = members
        .leader
        .and_then(|id| views.iter().find(|s| s.id == id));
    ready_for_change(me, members, leader, &views).map_err(|e| e.to_string())
}

/// Step 3, run once the node serves: asks the leader to promote this node
/// while it is a learner, until it is a voter (the leader refuses while it
/// has not caught up). Does nothing if the membership does not list it: an
/// operator removed it on purpose.
pub async fn promote(config: Config) {
    let me = config.id;
    let client = match client(&config) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "auto-join: cannot promote");
            return;
        }
    };
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match try_promote(&config, &client).await {
            Ok(Some(index)) => {
                tracing::info!(node = me, index, "auto-join: promoted to voter");
                return;
            }
            Ok(None) => return,
            Err(e) => {
                if attempt == 1 || attempt % (LOG_EVERY * 4) == 0 {
                    tracing::info!(node = me, attempt, reason = %e, "auto-join: not promoted yet");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `Ok(Some(index))` once promoted, `Ok(None)` if there is nothing to do.
async fn try_promote(config: &Config, client: &Client) -> Result<Option<u64>, String> {
    let me = config.id;
    let members = client.members().await.map_err(|e| e.to_string())?;
    match members.members.iter().find(|m| m.id == me) {
        None => {
            tracing::info!(
                node = me,
                "auto-join: not a member (removed by an operator?); not promoting"
            );
            Ok(None)
        }
        Some(m) if m.voter => {
            // Promoted already, perhaps by an earlier attempt whose answer
            // was lost.
            tracing::info!(
                node = me,
                "auto-join: promoted to voter (found in the membership)"
            );
            Ok(None)
        }
        Some(_) => {
            check_cluster(me, client, &members).await?;
            let index = client
                .add_member(
                    me,
                    &config.me().peer_addr,
                    &config.advertise_client_addr,
                    true,
                )
                .await
                .map_err(|e: ClientError| e.to_string())?;
            Ok(Some(index))
        }
    }
}
