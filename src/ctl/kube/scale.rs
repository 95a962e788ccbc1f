//! `raftctl scale N`: changes the member count in the order that keeps the
//! cluster safe, then the StatefulSet.
//!
//! - Down: refuse if the remaining voters could not form a quorum (counting
//!   only those that answer now); move leadership off the pods that go;
//!   remove their members one at a time, highest ordinal first; only then
//!   patch spec.replicas, so no pod of a member disappears while it counts.
//! - Up: patch spec.replicas, wait for the new pods to run, add each as a
//!   learner and promote it once caught up (`member add`). Until the node
//!   accepts ordinals beyond the founding members (RAFTKV_REPLICAS), scaling
//!   up stops at the founding count, with that reason.
//!
//! spec.replicas is changed through the scale subresource (a merge patch),
//! the way `kubectl scale` does; the pod template is never touched.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde::Serialize;
use tokio::time::Instant;

use super::errors::api_error;
use super::manifests::{CLIENT_PORT, PEER_PORT};
use super::{FIELD_MANAGER, KubePlatform};
use crate::client::Client;
use crate::ctl::exit::{CtlError, Exit};
use crate::pb;

/// The membership steps of a scale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ScalePlan {
    /// Already at the asked size.
    Nothing,
    /// Hand leadership to `transfer_to` first (if set), then remove `remove`
    /// in order.
    Down {
        transfer_to: Option<u64>,
        remove: Vec<u64>,
    },
    /// Add (and promote) `add` in order, once their pods run.
    Up { add: Vec<u64> },
}

/// Plans going from `current` to `target` replicas; `answering` are the
/// nodes that answered a status request just now.
pub fn plan(
    current: i32,
    founders: i32,
    target: i32,
    members: &pb::MembersResponse,
    answering: &BTreeSet<u64>,
) -> Result<ScalePlan, CtlError> {
    let refuse = |why: String| {
        CtlError::new(
            Exit::BadInput,
            format!("refusing to scale to {target}: {why}"),
        )
    };
    if target < 1 {
        return Err(refuse("a cluster needs at least one member".into()));
    }
    if target == current {
        return Ok(ScalePlan::Nothing);
    }
    let target_u = target as u64;
    if target > current {
        if target > founders {
            return Err(refuse(format!(
                "raftkv nodes start only with ordinals below the founding member count (RAFTKV_REPLICAS={founders}); pods from ordinal {founders} on would not start"
            )));
        }
        let voters = members.members.iter().filter(|m| m.voter).count();
        let up = members
            .members
            .iter()
            .filter(|m| m.voter && answering.contains(&m.id))
            .count();
        if up <= voters / 2 {
            return Err(refuse(format!(
                "only {up} of {voters} voters answer; adding members needs a working quorum"
            )));
        }
        let present: BTreeSet<u64> = members.members.iter().map(|m| m.id).collect();
        let add = (current as u64..target_u)
            .filter(|id| !present.contains(id))
            .collect();
        return Ok(ScalePlan::Up { add });
    }
    let remaining: Vec<u64> = members
        .members
        .iter()
        .filter(|m| m.voter && m.id < target_u)
        .map(|m| m.id)
        .collect();
    let live: Vec<u64> = remaining
        .iter()
        .copied()
        .filter(|id| answering.contains(id))
        .collect();
    let quorum = remaining.len() / 2 + 1;
    if remaining.is_empty() || live.len() < quorum {
        return Err(refuse(format!(
            "the {} voters that would remain ({remaining:?}) need {quorum} answering for a quorum, and {} do ({live:?})",
            remaining.len(),
            live.len()
        )));
    }
    let mut remove: Vec<u64> = members
        .members
        .iter()
        .map(|m| m.id)
        .filter(|id| *id >= target_u)
        .collect();
    remove.sort_unstable_by(|a, b| b.cmp(a));
    let transfer_to = match members.leader {
        Some(leader) if leader >= target_u => live.first().copied(),
        _ => None,
    };
    Ok(ScalePlan::Down {
        transfer_to,
        remove,
    })
}

/// Sets spec.replicas through the scale subresource.
pub async fn patch_replicas(platform: &KubePlatform, replicas: i32) -> Result<(), CtlError> {
    let api: Api<StatefulSet> = Api::namespaced(platform.client.clone(), &platform.namespace);
    let patch = serde_json::json!({ "spec": { "replicas": replicas } });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    api.patch_scale(&platform.name, &params, &Patch::Merge(&patch))
        .await
        .map_err(|e| api_error(&format!("scale statefulset {}", platform.name), e))?;
    Ok(())
}

/// What `scale` did.
#[derive(Debug, Clone, Serialize)]
pub struct Scaled {
    pub from: i32,
    pub to: i32,
    pub plan: ScalePlan,
}

/// Runs the whole scale: plan, membership steps, StatefulSet.
pub async fn scale(
    platform: &KubePlatform,
    client: &Client,
    target: i32,
) -> Result<Scaled, CtlError> {
    let (current, founders) = super::deploy::existing(platform).await?.ok_or_else(|| {
        CtlError::error(format!(
            "no statefulset {} in namespace {} (deploy it first)",
            platform.name, platform.namespace
        ))
    })?;
    let members = client.members().await?;
    let answering: BTreeSet<u64> = client
        .status_all()
        .await
        .into_iter()
        .filter_map(|(_, a)| a.ok().map(|s| s.id))
        .collect();
    let plan = plan(current, founders, target, &members, &answering)?;
    match &plan {
        ScalePlan::Nothing => {}
        ScalePlan::Down {
            transfer_to,
            remove,
        } => {
            if let Some(to) = transfer_to {
                eprintln!("moving leadership to node {to}");
                client.transfer_leader(*to).await?;
            }
            for id in remove {
                eprintln!("removing member {id}");
                client.remove_member(*id).await?;
            }
            patch_replicas(platform, target).await?;
        }
        ScalePlan::Up { add } => {
            patch_replicas(platform, target).await?;
            wait_running(platform, target).await?;
            for &id in add {
                eprintln!("adding member {id} (learner, promoted once caught up)");
                let peer = platform.pod_address(id, PEER_PORT);
                let client_addr = platform.pod_address(id, CLIENT_PORT);
                client.add_member(id, &peer, &client_addr, true).await?;
            }
        }
    }
    Ok(Scaled {
        from: current,
        to: target,
        plan,
    })
}

/// Waits until `replicas` pods run (up to 5 minutes).
async fn wait_running(platform: &KubePlatform, replicas: i32) -> Result<(), CtlError> {
    use super::super::platform::Platform;
    let start = Instant::now();
    loop {
        let running = platform.pods().await?.iter().filter(|p| p.running).count() as i32;
        eprint!("\rwaiting for pods: {running}/{replicas} running   ");
        if running >= replicas {
            eprintln!();
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(300) {
            eprintln!();
            return Err(CtlError::new(
                Exit::Unhealthy,
                format!("only {running}/{replicas} pods run after 5 minutes; no member was added"),
            ));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[cfg(test)]
mod tests;
