//! Membership changes in a chaos run, under the workload: a learner added
//! and promoted, the leader or a follower removed, leadership handed to a
//! follower whose log lags, a rolling restart. Each change leaves the
//! cluster with the voters it found (a node added for the change is
//! removed again, its data deleted), so changes can repeat all run long.
//! Nodes are added and removed with the steps of `raftctl scale`
//! (`platform::scale`), on every platform that scales.

use std::time::Duration;

use rand::seq::IndexedRandom;
use tokio::time::Instant;

use super::links::{self, leader_and_term, statuses};
use super::report::LinkCheck;
use crate::client::Client;
use crate::ctl::exit::{CtlError, Exit};
use crate::ctl::fault::MemberChange;
use crate::ctl::platform::scale::{self, ScaleOptions};
use crate::ctl::platform::{Grace, Platform, PodInfo};

/// How long a new node may take to become a voter, a transfer to take
/// effect, or the cluster to be healthy after one restart.
const LIMIT: Duration = Duration::from_secs(60);

/// How long the follower of a lagging transfer is frozen: long enough
/// for the workload to leave its log well behind.
const LAG: Duration = Duration::from_secs(1);

/// What a membership change (or a disk fault) did: the pod it centred on,
/// whether that pod led, how long the preparation took before the change
/// proper (its unavailability counts from then), and the check for the
/// report.
pub struct Changed {
    pub pod: PodInfo,
    pub was_leader: bool,
    pub setup: Duration,
    pub check: LinkCheck,
}

fn options() -> ScaleOptions {
    ScaleOptions {
        delete_data: true,
        join_limit: LIMIT,
    }
}

/// The pods, which must be the ordinals 0..n for a scale.
async fn pods<P: Platform>(platform: &P) -> Result<Vec<PodInfo>, CtlError> {
    let pods = platform.pods().await?;
    if pods.iter().enumerate().any(|(i, p)| p.id != i as u64) {
        let ids: Vec<u64> = pods.iter().map(|p| p.id).collect();
        return Err(CtlError::new(
            Exit::Unhealthy,
            format!("the pods are not the ordinals 0..n ({ids:?}): no member can be added"),
        ));
    }
    Ok(pods)
}

/// Adds the next ordinal (a learner, promoted once caught up); its pod and
/// what `scale` saw.
async fn add<P: Platform>(platform: &P, admin: &Client) -> Result<(PodInfo, String), CtlError> {
    let before = pods(platform).await?;
    let target = before.len() as i64 + 1;
    let scaled = scale::scale(platform, admin, target, &options()).await?;
    let id = before.len() as u64;
    let pod = platform
        .pods()
        .await?
        .into_iter()
        .find(|p| p.id == id)
        .ok_or_else(|| CtlError::error(format!("node {id} was added but has no pod")))?;
    let seen: Vec<String> = scaled
        .steps
        .iter()
        .map(|s| format!("{:.1}s: {}", s.at_seconds, s.action))
        .collect();
    Ok((pod, format!("node {id} added: {}", seen.join(", "))))
}

/// Removes node `id` (added by [`add`]) as `raftctl scale` would, moving
/// leadership off it first if it leads; its data is deleted.
async fn remove_added<P: Platform>(platform: &P, admin: &Client, id: u64) -> Result<(), CtlError> {
    scale::scale(platform, admin, id as i64, &options())
        .await
        .map(drop)
}

/// Whether node `id`, at `endpoint`, leads with a lease.
async fn leads(admin: &Client, endpoint: &str) -> bool {
    admin
        .status(endpoint)
        .await
        .is_ok_and(|s| s.leads_with_lease())
}

/// Hands leadership to node `id` until it leads with a lease (for up to
/// `limit`); how long that took, if it did.
pub(super) async fn transfer_to(
    admin: &Client,
    id: u64,
    endpoint: &str,
    limit: Duration,
) -> Option<f64> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if leads(admin, endpoint).await {
            return Some(start.elapsed().as_secs_f64());
        }
        // Refused while it catches up, or timed out: asked again.
        let _ = admin.transfer_leader(id).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Whether node `id` is among the members the leader lists.
async fn is_member(admin: &Client, id: u64) -> Option<bool> {
    let members = admin.members().await.ok()?;
    Some(members.members.iter().any(|m| m.id == id))
}

fn endpoint_of(pod: &PodInfo) -> Result<String, CtlError> {
    pod.endpoint
        .clone()
        .ok_or_else(|| CtlError::error(format!("{} has no client endpoint", pod.name)))
}

/// Carries out `change`; see [`MemberChange`] for what each does.
pub async fn change<P: Platform>(
    platform: &P,
    admin: &Client,
    change: MemberChange,
) -> Result<Changed, CtlError> {
    let start = Instant::now();
    let answers = statuses(admin).await;
    let (leader, term) = leader_and_term(&answers)
        .ok_or_else(|| CtlError::new(Exit::Unhealthy, "no leader: no member change"))?;
    let founders = pods(platform).await?;
    let leader_pod = founders
        .iter()
        .find(|p| p.id == leader)
        .cloned()
        .ok_or_else(|| CtlError::error(format!("the leader, node {leader}, has no pod")))?;
    let mut setup = Duration::ZERO;
    let (pod, confirmed, confirmation) = match change {
        MemberChange::AddLearner => {
            let (pod, seen) = add(platform, admin).await?;
            remove_added(platform, admin, pod.id).await?;
            let gone = is_member(admin, pod.id).await == Some(false);
            let what = format!("{seen}; removed again: {}", yes(gone));
            (pod, gone, what)
        }
        MemberChange::RemoveFollower => {
            let (pod, seen) = add(platform, admin).await?;
            setup = start.elapsed();
            let follows = !leads(admin, &endpoint_of(&pod)?).await;
            remove_added(platform, admin, pod.id).await?;
            let gone = is_member(admin, pod.id).await == Some(false);
            let what = format!(
                "{seen}; removed while it followed: {}, no longer a member: {}",
                yes(follows),
                yes(gone)
            );
            (pod, gone, what)
        }
        MemberChange::RemoveLeader => {
            let (pod, seen) = add(platform, admin).await?;
            let endpoint = endpoint_of(&pod)?;
            let led = transfer_to(admin, pod.id, &endpoint, LIMIT).await;
            let led_term = admin.status(&endpoint).await.map_or(term, |s| s.term);
            setup = start.elapsed();
            // Through the leader, which is the node itself: it commits its
            // own removal and steps down.
            let removed = admin.remove_member(pod.id).await;
            let after = wait_other_leader(admin, pod.id, led_term).await;
            platform.stop_pod(pod.id).await?;
            platform.delete_data(pod.id).await?;
            let gone = is_member(admin, pod.id).await == Some(false);
            let what = format!(
                "{seen}; it led after {}; its removal {}; {}; no longer a member: {}",
                led.map_or("never".into(), |s| format!("{s:.1}s")),
                match &removed {
                    Ok(index) => format!("committed at index {index}"),
                    Err(e) => format!("failed: {e}"),
                },
                after.clone().unwrap_or_else(|| "no other node led".into()),
                yes(gone)
            );
            // Judged by its answer too: the removal goes through the
            // client's session, so a retry after the removed leader's
            // answer was lost gets the first answer (docs/consensus.md,
            // "Membership changes, exactly once").
            let confirmed = removed.is_ok() && led.is_some() && after.is_some() && gone;
            (pod, confirmed, what)
        }
        MemberChange::TransferLagging => {
            let followers: Vec<&PodInfo> = founders.iter().filter(|p| p.id != leader).collect();
            let pod = (*followers.choose(&mut rand::rng()).ok_or_else(|| {
                CtlError::new(Exit::Unhealthy, "no follower to hand leadership to")
            })?)
            .clone();
            let endpoint = endpoint_of(&pod)?;
            platform.pause_pod(pod.id, LAG).await?;
            setup = start.elapsed();
            let lag = lag_of(admin, &leader_pod, &endpoint).await;
            let led = transfer_to(admin, pod.id, &endpoint, LIMIT).await;
            let lagged = lag.is_some_and(|l| l > 0);
            let what = format!(
                "node {} frozen for {LAG:?}, then {} entries behind the leader's commit; it led \
                 after {}",
                pod.id,
                lag.map_or("an unknown number of".into(), |l| l.to_string()),
                led.map_or("never".into(), |s| format!("{s:.1}s"))
            );
            (pod, lagged && led.is_some(), what)
        }
        MemberChange::RollingRestart => {
            // The followers first, the leader last, as a rolling update.
            let mut order: Vec<&PodInfo> = founders.iter().filter(|p| p.id != leader).collect();
            order.push(&leader_pod);
            let mut seen = Vec::new();
            let mut all = true;
            for pod in order {
                platform
                    .delete_pod(&pod.name, Grace::Graceful(None))
                    .await?;
                let back = super::settle(admin, LIMIT).await;
                all &= back;
                seen.push(format!(
                    "{} restarted at {:.1}s{}",
                    pod.name,
                    start.elapsed().as_secs_f64(),
                    if back {
                        ""
                    } else {
                        ", the cluster not healthy after it"
                    }
                ));
            }
            (leader_pod.clone(), all, seen.join(", "))
        }
    };
    let changed_after = start.elapsed().as_secs_f64();
    let (recovered, recovery, recovered_after) = links::recover(admin).await;
    Ok(Changed {
        was_leader: pod.id == leader,
        pod,
        setup,
        check: LinkCheck {
            fault: format!("member {}", change.name()),
            at_seconds: 0.0,
            leader,
            term,
            links: Vec::new(),
            confirmed,
            confirmation,
            confirmed_after_seconds: confirmed.then_some(changed_after),
            recovered,
            recovery,
            recovered_after_seconds: recovered_after,
        },
    })
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// How far node `endpoint`'s applied index is behind the commit index of
/// `leader`, read right after the follower runs again.
async fn lag_of(admin: &Client, leader: &PodInfo, endpoint: &str) -> Option<u64> {
    let follower = admin.status(endpoint).await.ok()?;
    let leader = admin.status(leader.endpoint.as_deref()?).await.ok()?;
    Some(leader.commit_index.saturating_sub(follower.applied_index))
}

/// Waits (up to [`LIMIT`]) until a node other than `removed` leads at a
/// term above `term`; what was seen.
async fn wait_other_leader(admin: &Client, removed: u64, term: u64) -> Option<String> {
    let start = Instant::now();
    while start.elapsed() < LIMIT {
        let answers = statuses(admin).await;
        if let Some((leader, now)) = leader_and_term(&answers)
            && leader != removed
            && now > term
            && answers
                .iter()
                .any(|s| s.id == leader && s.leads_with_lease())
        {
            return Some(format!(
                "node {leader} led at term {now} {:.1}s later",
                start.elapsed().as_secs_f64()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}
