//! Which pod a fault hits: a named one, the current leader, or any.

use rand::Rng;

use super::PodInfo;
use crate::client::Client;
use crate::ctl::exit::{CtlError, Exit};
use crate::pb;

/// The pod `delete-pod` and `chaos` choose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Name(String),
    Leader,
    Random,
}

impl pb::StatusResponse {
    /// Whether this node leads and holds a lease it serves reads from.
    pub fn leads_with_lease(&self) -> bool {
        self.role == "leader" && self.lease_remaining_seconds > 0.0
    }
}

/// The id of the node that leads with the highest term among those that
/// answer, if any answers as leader.
pub async fn leader_of(client: &Client) -> Option<u64> {
    highest_leader(client, |s| s.role == "leader").await
}

/// The same, among leaders that hold their lease (a new leader waiting out
/// an old lease, or one that lost its own, does not count).
pub async fn leader_with_lease(client: &Client) -> Option<u64> {
    highest_leader(client, pb::StatusResponse::leads_with_lease).await
}

async fn highest_leader(client: &Client, leads: fn(&pb::StatusResponse) -> bool) -> Option<u64> {
    client
        .status_all()
        .await
        .into_iter()
        .filter_map(|(_, answer)| answer.ok())
        .filter(leads)
        .max_by_key(|s| s.term)
        .map(|s| s.id)
}

/// Resolves `target` among `pods`; `leader` is the leader's node id as
/// [`leader_of`] found it (needed for [`Target::Leader`] only).
pub fn choose(target: &Target, pods: &[PodInfo], leader: Option<u64>) -> Result<PodInfo, CtlError> {
    match target {
        Target::Name(name) => pods
            .iter()
            .find(|p| &p.name == name)
            .cloned()
            .ok_or_else(|| {
                let names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
                CtlError::new(
                    Exit::BadInput,
                    format!("no pod named {name:?} (pods: {})", names.join(", ")),
                )
            }),
        Target::Leader => {
            let id = leader.ok_or_else(|| {
                CtlError::new(
                    Exit::Unhealthy,
                    "no node answers as leader; nothing deleted",
                )
            })?;
            pods.iter().find(|p| p.id == id).cloned().ok_or_else(|| {
                CtlError::error(format!(
                    "the leader, node {id}, has no pod on this platform"
                ))
            })
        }
        Target::Random => {
            if pods.is_empty() {
                return Err(CtlError::error("the cluster has no pods"));
            }
            let index = rand::rng().random_range(0..pods.len());
            Ok(pods[index].clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods() -> Vec<PodInfo> {
        (0..3)
            .map(|id| PodInfo {
                name: format!("raftkv-{id}"),
                id,
                running: true,
                endpoint: None,
            })
            .collect()
    }

    #[test]
    fn targets_resolve_to_pods() {
        let pods = pods();
        assert_eq!(
            choose(&Target::Leader, &pods, Some(2)).unwrap().name,
            "raftkv-2"
        );
        assert_eq!(
            choose(&Target::Leader, &pods, None).unwrap_err().exit,
            Exit::Unhealthy
        );
        assert_eq!(
            choose(&Target::Leader, &pods, Some(7)).unwrap_err().exit,
            Exit::Error
        );
        let named = Target::Name("raftkv-1".into());
        assert_eq!(choose(&named, &pods, None).unwrap().id, 1);
        let missing = choose(&Target::Name("raftkv-9".into()), &pods, None).unwrap_err();
        assert_eq!(missing.exit, Exit::BadInput);
        assert!(
            missing.message.contains("raftkv-0, raftkv-1, raftkv-2"),
            "{missing}"
        );
        assert!(choose(&Target::Random, &pods, None).unwrap().id < 3);
        assert!(choose(&Target::Random, &[], None).is_err());
    }
}
