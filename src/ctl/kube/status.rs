//! `raftctl status --platform kube`: each pod as Kubernetes sees it (phase,
//! readiness, restarts, node) beside the node as raftkv sees it (role, term,
//! leader, lease, commit/applied lag), one row per ordinal.

use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;

use super::KubePlatform;
use crate::client::{Client, ClientOptions};
use crate::ctl::cli::Output;
use crate::ctl::cluster::{NodeStatus, health, rows};
use crate::ctl::exit::CtlError;
use crate::ctl::output::{print_structured, table};

/// One pod and its node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PodStatus {
    pub pod: String,
    pub phase: String,
    pub ready: bool,
    pub restarts: i32,
    /// The Kubernetes node the pod runs on.
    pub node: String,
    /// The raftkv node behind the pod (None: it did not answer).
    pub raft: Option<NodeStatus>,
}

/// Joins pods with the status rows of ordinals `0..`, row `i` being ordinal `i`.
pub fn merge(platform: &KubePlatform, pods: &[Pod], statuses: &[NodeStatus]) -> Vec<PodStatus> {
    pods.iter()
        .map(|pod| {
            let status = pod.status.clone().unwrap_or_default();
            let restarts = status
                .container_statuses
                .as_ref()
                .map_or(0, |c| c.iter().map(|c| c.restart_count).sum());
            let ordinal = platform.ordinal(pod);
            let raft = ordinal
                .and_then(|i| statuses.get(usize::try_from(i).ok()?))
                .cloned();
            PodStatus {
                pod: pod.metadata.name.clone().unwrap_or_default(),
                phase: if pod.metadata.deletion_timestamp.is_some() {
                    "Terminating".into()
                } else {
                    status.phase.clone().unwrap_or_else(|| "Unknown".into())
                },
                ready: super::pod_ready(pod),
                restarts,
                node: pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_else(|| "-".into()),
                raft,
            }
        })
        .collect()
}

fn dash<T: ToString>(v: Option<T>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

/// The table: pod columns, then raft columns.
pub fn render(rows: &[PodStatus]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let raft = r.raft.as_ref();
            vec![
                r.pod.clone(),
                r.phase.clone(),
                if r.ready { "yes" } else { "no" }.into(),
                r.restarts.to_string(),
                r.node.clone(),
                raft.map_or("-".into(), |s| s.role.clone()),
                dash(raft.and_then(|s| s.term)),
                dash(raft.and_then(|s| s.leader)),
                raft.and_then(|s| s.lease_remaining_seconds)
                    .filter(|s| *s > 0.0)
                    .map_or("-".into(), |s| format!("{s:.2}s")),
                dash(raft.and_then(|s| s.commit)),
                dash(raft.and_then(|s| s.applied)),
                dash(raft.and_then(|s| s.lag)),
            ]
        })
        .collect();
    table(
        &[
            "POD", "PHASE", "READY", "RESTARTS", "NODE", "ROLE", "TERM", "LEADER", "LEASE",
            "COMMIT", "APPLIED", "LAG",
        ],
        &cells,
    )
}

/// Lists the pods, asks each node for its status through the port-forwards
/// (or DNS in the cluster), prints both; the exit code tells the health.
pub async fn status(
    platform: &KubePlatform,
    output: Output,
    tls: Option<crate::tls::ClientTls>,
) -> Result<(), CtlError> {
    let pods = platform.list_pods().await?;
    let count = pods
        .iter()
        .filter_map(|p| platform.ordinal(p))
        .max()
        .map_or(0, |m| m + 1);
    let statuses = if count == 0 {
        Vec::new()
    } else {
        let endpoints = platform.endpoints_for(count).await?;
        let options = ClientOptions {
            tls,
            ..ClientOptions::default()
        };
        let client = Client::lazy(endpoints, options)?;
        let mut statuses = rows(&client.status_all().await);
        // A failed tunnel shows the client a closed connection only; the
        // reason is the port-forward's.
        for (i, row) in statuses.iter_mut().enumerate() {
            if row.error.is_some() {
                if let Some(reason) = platform.forward_failure(&pod_name(platform, i)).await {
                    row.error = Some(reason);
                }
            }
        }
        statuses
    };
    let merged = merge(platform, &pods, &statuses);
    match output {
        Output::Table => print!("{}", render(&merged)),
        format => print_structured(format, &merged)?,
    }
    if pods.is_empty() {
        return Err(CtlError::new(
            crate::ctl::exit::Exit::Unreachable,
            format!(
                "no pods of {} in namespace {}",
                platform.name, platform.namespace
            ),
        ));
    }
    health(&statuses).map_err(|e| with_reasons(platform, &statuses, e))
}

fn pod_name(platform: &KubePlatform, ordinal: usize) -> String {
    format!("{}-{ordinal}", platform.name)
}

/// The health error with why each pod did not answer, on one line:
/// "no endpoint answered (raftkv-0: port-forward to port 7379 failed: ...)".
fn with_reasons(platform: &KubePlatform, statuses: &[NodeStatus], e: CtlError) -> CtlError {
    let reasons: Vec<String> = statuses
        .iter()
        .enumerate()
        .filter_map(|(i, row)| {
            Some(format!(
                "{}: {}",
                pod_name(platform, i),
                row.error.as_ref()?
            ))
        })
        .collect();
    if reasons.is_empty() {
        return e;
    }
    CtlError::new(e.exit, format!("{} ({})", e.message, reasons.join("; ")))
}
