//! raftctl on Kubernetes, through the API server with the `kube` crate:
//! the cluster's objects (`manifests`), applying them (`deploy`), pods and
//! members (`status`), the safe scaling order (`scale`) and the platform
//! operations the fault commands use (list and delete pods).
//!
//! Everything goes through one `kube::Client`, so tests put a `tower-test`
//! mock API server behind it and assert every request.

pub mod commands;
pub mod deploy;
pub mod errors;
mod forward;
pub mod manifests;
pub mod scale;
pub mod status;

use std::path::Path;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use tokio::sync::Mutex;

use super::cli::KubeArgs;
use super::exit::{CtlError, Exit};
use super::platform::pod::{CLIENT_PORT, selector_of};
use super::platform::{Grace, Platform, PodInfo};
use errors::api_error;
use forward::Forwards;

/// The field manager of raftctl's server-side applies and patches.
pub const FIELD_MANAGER: &str = "raftctl";

/// A raftkv StatefulSet in one namespace of one cluster.
pub struct KubePlatform {
    pub client: Client,
    pub namespace: String,
    /// The StatefulSet's name; pods are NAME-0, NAME-1, ...
    pub name: String,
    /// Reach pods by their DNS names (raftctl runs inside the cluster)
    /// rather than through port-forwards.
    in_cluster: bool,
    /// Which pods are the members and their client port (boxed: the
    /// platform is one variant of `AnyPlatform` among smaller ones).
    pods: Box<Members>,
    forwards: Mutex<Forwards>,
}

/// The StatefulSet's pods: their label selector (`--selector`) and client
/// port (`--client-port`).
struct Members {
    selector: String,
    client_port: i32,
}

/// Reads the kubeconfig like kubectl: `--kubeconfig`, else $KUBECONFIG, else
/// ~/.kube/config, else the pod's service account; `--context` picks a context.
pub async fn client_config(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<Config, CtlError> {
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..KubeConfigOptions::default()
    };
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path).map_err(|e| {
                CtlError::new(
                    Exit::BadInput,
                    format!("cannot read kubeconfig {}: {e}", path.display()),
                )
            })?;
            Config::from_custom_kubeconfig(file, &options).await
        }
        None if context.is_some() => Config::from_kubeconfig(&options).await,
        None => {
            return Config::infer()
                .await
                .map_err(|e| api_error("find a cluster", kube::Error::InferConfig(e)));
        }
    };
    config.map_err(|e| CtlError::new(Exit::BadInput, format!("cannot use the kubeconfig: {e}")))
}

impl KubePlatform {
    /// Connects as `args` say (kubeconfig, context, namespace).
    pub async fn connect(args: &KubeArgs) -> Result<KubePlatform, CtlError> {
        let config = client_config(args.kubeconfig.as_deref(), args.context.as_deref()).await?;
        let namespace = args
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client =
            Client::try_from(config).map_err(|e| api_error("create a Kubernetes client", e))?;
        let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
        let platform = KubePlatform::new(client, namespace, args.name.clone(), in_cluster);
        Ok(platform.with_pods(args.selector.clone(), args.client_port))
    }

    /// The platform of StatefulSet `name`, whose pods carry raftctl's
    /// labels and listen on the default client port.
    pub fn new(client: Client, namespace: String, name: String, in_cluster: bool) -> KubePlatform {
        KubePlatform {
            client,
            namespace,
            pods: Box::new(Members {
                selector: selector_of(&name),
                client_port: CLIENT_PORT,
            }),
            name,
            in_cluster,
            forwards: Mutex::new(Forwards::default()),
        }
    }

    /// Pods selected by `selector` (default: raftctl's labels) reached on
    /// `client_port`: a Helm release's members (docs/kubernetes.md,
    /// "Scaling").
    pub fn with_pods(mut self, selector: Option<String>, client_port: u16) -> KubePlatform {
        if let Some(selector) = selector {
            self.pods.selector = selector;
        }
        self.pods.client_port = i32::from(client_port);
        self
    }

    pub fn pods_api(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The cluster's pods, in ordinal order.
    pub async fn list_pods(&self) -> Result<Vec<Pod>, CtlError> {
        let params = ListParams::default().labels(&self.pods.selector);
        let list = self.pods_api().list(&params).await.map_err(|e| {
            api_error(
                &format!(
                    "list the pods of {} in namespace {}",
                    self.name, self.namespace
                ),
                e,
            )
        })?;
        let mut pods: Vec<Pod> = list
            .items
            .into_iter()
            .filter(|p| self.ordinal(p).is_some())
            .collect();
        pods.sort_by_key(|p| self.ordinal(p));
        Ok(pods)
    }

    /// The ordinal of a pod of this StatefulSet (`NAME-<n>`).
    pub fn ordinal(&self, pod: &Pod) -> Option<u64> {
        pod_ordinal(&self.name, pod.metadata.name.as_deref()?)
    }

    /// The client address of pod `ordinal` inside the cluster.
    pub fn pod_address(&self, ordinal: u64, port: i32) -> String {
        format!(
            "{}-{ordinal}.{}-headless.{}.svc:{port}",
            self.name, self.name, self.namespace
        )
    }

    /// Client endpoints of every ordinal in `0..replicas` reachable from
    /// here: DNS names in the cluster, else local port-forwards (opened once
    /// per ordinal, kept while `self` lives).
    pub async fn endpoints_for(&self, replicas: u64) -> Result<Vec<String>, CtlError> {
        if self.in_cluster {
            return Ok((0..replicas)
                .map(|i| self.pod_address(i, self.pods.client_port))
                .collect());
        }
        let mut forwards = self.forwards.lock().await;
        let mut endpoints = Vec::new();
        for i in 0..replicas {
            let pod = format!("{}-{i}", self.name);
            let address = forwards
                .add(self.pods_api(), pod, self.pods.client_port as u16)
                .await
                .map_err(|e| CtlError::error(format!("cannot open a local port-forward: {e}")))?;
            endpoints.push(address);
        }
        Ok(endpoints)
    }

    /// Endpoints of every pod that exists now.
    pub async fn forward_all(&self) -> Result<Vec<String>, CtlError> {
        let pods = self.list_pods().await?;
        let count = pods
            .iter()
            .filter_map(|p| self.ordinal(p))
            .max()
            .map_or(0, |m| m + 1);
        if count == 0 {
            return Err(CtlError::new(
                Exit::Unreachable,
                format!(
                    "no pods of {} in namespace {} (deploy it with `raftctl deploy`)",
                    self.name, self.namespace
                ),
            ));
        }
        self.endpoints_for(count).await
    }
}

/// The ordinal of pod `pod` of StatefulSet `sts`.
pub fn pod_ordinal(sts: &str, pod: &str) -> Option<u64> {
    let digits = pod.strip_prefix(sts)?.strip_prefix('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Whether the pod is in phase Running with every container ready.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

impl Platform for KubePlatform {
    fn kind(&self) -> &'static str {
        "kube"
    }

    async fn pods(&self) -> Result<Vec<PodInfo>, CtlError> {
        Ok(self
            .list_pods()
            .await?
            .iter()
            .filter_map(|pod| {
                let id = self.ordinal(pod)?;
                let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
                Some(PodInfo {
                    name: pod.metadata.name.clone()?,
                    id,
                    running: phase == Some("Running") && pod.metadata.deletion_timestamp.is_none(),
                    endpoint: self
                        .in_cluster
                        .then(|| self.pod_address(id, self.pods.client_port)),
                })
            })
            .collect())
    }

    async fn delete_pod(&self, name: &str, grace: Grace) -> Result<(), CtlError> {
        let params = DeleteParams {
            grace_period_seconds: match grace {
                Grace::Forced => Some(0),
                Grace::Graceful(None) => None,
                Grace::Graceful(Some(d)) => Some(d.as_secs().max(1).try_into().unwrap_or(u32::MAX)),
            },
            ..DeleteParams::default()
        };
        self.pods_api().delete(name, &params).await.map_err(|e| {
            api_error(
                &format!("delete pod {name} in namespace {}", self.namespace),
                e,
            )
        })?;
        Ok(())
    }

    async fn start_pod(&self, id: u64) -> Result<(), CtlError> {
        self.start_ordinal(id).await
    }

    async fn stop_pod(&self, id: u64) -> Result<(), CtlError> {
        self.stop_ordinal(id).await
    }

    async fn retained_data(&self, id: u64) -> Result<Option<String>, CtlError> {
        self.retained_claim(id).await
    }

    async fn delete_data(&self, id: u64) -> Result<(), CtlError> {
        self.delete_claim(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_come_from_statefulset_pod_names() {
        assert_eq!(pod_ordinal("raftkv", "raftkv-2"), Some(2));
        assert_eq!(pod_ordinal("raftkv", "raftkv-12"), Some(12));
        assert_eq!(pod_ordinal("raftkv", "raftkv-headless-0"), None);
        assert_eq!(pod_ordinal("raftkv", "raftkv-"), None);
        assert_eq!(pod_ordinal("raft", "raftkv-1"), None);
    }
}
