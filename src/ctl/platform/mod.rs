//! Where a raftkv cluster runs — Kubernetes pods, Docker containers or the
//! processes of `raftctl local` — behind one small trait, so that the fault
//! commands (`delete-pod`, `chaos`) and `scale` are written once for every
//! platform.
//!
//! A "pod" here is a node's unit of deployment on its platform. Deleting one
//! is what the platform does to a pod: it stops (forced or after a grace
//! period) and its controller (the StatefulSet controller, `raftctl local`'s
//! supervisor, raftctl itself for Docker) starts it again with the same name
//! and the same volume.

pub mod docker;
pub mod local;
pub mod pod;
pub mod scale;
mod target;

use std::future::Future;
use std::time::Duration;

use serde::Serialize;

pub use target::{Target, choose, leader_of, leader_with_lease};

use super::exit::{CtlError, Exit};
use super::fault::disk::{DiskState, DiskStep};
use super::fault::{FaultKind, LinkFault, MemberChange};

/// One node's pod (or container, or process), as the platform sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodInfo {
    /// The platform's name: `raftkv-2` (pod, container), `node-2` (process).
    pub name: String,
    /// The raftkv node id (the StatefulSet ordinal).
    pub id: u64,
    /// Whether it runs now (a pod in phase Running, a live process).
    pub running: bool,
    /// Its client address, reachable from this machine, if it has one.
    pub endpoint: Option<String>,
}

/// What deploying one object did (on Kubernetes, or its Docker stand-in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// `statefulset.apps/raftkv`, as kubectl names it (`container/raftkv-0`
    /// on Docker).
    pub object: String,
    /// `created`, `configured`, `started` or `unchanged`.
    pub action: &'static str,
}

/// How a pod is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Grace {
    /// SIGKILL at once (`kubectl delete --grace-period=0 --force`).
    Forced,
    /// SIGTERM, then SIGKILL after this long (`None`: the platform's default,
    /// the pod's terminationGracePeriodSeconds on Kubernetes).
    Graceful(Option<Duration>),
}

impl Grace {
    /// Parses `--grace`: `0` (or `forced`), `default` (or `graceful`), or a
    /// duration such as `30s`.
    pub fn parse(text: &str) -> Result<Grace, String> {
        match text {
            "0" | "forced" | "force" => Ok(Grace::Forced),
            "default" | "graceful" => Ok(Grace::Graceful(None)),
            other => match super::duration::parse_duration(other)? {
                d if d.is_zero() => Ok(Grace::Forced),
                d => Ok(Grace::Graceful(Some(d))),
            },
        }
    }

    /// Short text for tables: `forced`, `graceful`, `graceful 5s`.
    pub fn label(&self) -> String {
        match self {
            Grace::Forced => "forced".into(),
            Grace::Graceful(None) => "graceful".into(),
            Grace::Graceful(Some(d)) => format!("graceful {}s", d.as_secs_f64()),
        }
    }
}

/// The operations the fault commands and `scale` need from a platform.
///
/// Scaling adds and removes pods at the end of the ordinal range, one at a
/// time: `start_pod(n)` only when pods `0..n` exist, `stop_pod(n)` only for
/// the highest ordinal. That is all a StatefulSet can do (spec.replicas),
/// and Docker and local follow the same rule so that `scale` has one order.
pub trait Platform {
    /// `kube`, `docker` or `local`, for messages.
    fn kind(&self) -> &'static str;

    /// Every pod of the cluster, in id order.
    fn pods(&self) -> impl Future<Output = Result<Vec<PodInfo>, CtlError>> + Send;

    /// Deletes pod `name`; it comes back under the same name with its data.
    /// Returns once the platform has accepted the deletion (Kubernetes) or
    /// the replacement has been started (Docker, local).
    fn delete_pod(
        &self,
        name: &str,
        grace: Grace,
    ) -> impl Future<Output = Result<(), CtlError>> + Send;

    /// Creates and starts pod `id` from the cluster's pod template, with its
    /// data volume (an existing one is reused: check [`Self::retained_data`]
    /// first). The node joins the cluster by itself (`--auto-join`).
    fn start_pod(&self, id: u64) -> impl Future<Output = Result<(), CtlError>> + Send;

    /// Stops pod `id` for good and removes it (not restarted); its data
    /// volume stays.
    fn stop_pod(&self, id: u64) -> impl Future<Output = Result<(), CtlError>> + Send;

    /// The data volume of ordinal `id` as the user would name it (`volume
    /// raftkv-data-3`, `persistentvolumeclaim/data-raftkv-3`, `directory
    /// DIR/node-3`), if it exists and holds anything.
    fn retained_data(
        &self,
        id: u64,
    ) -> impl Future<Output = Result<Option<String>, CtlError>> + Send;

    /// Deletes the data volume of ordinal `id`; its pod must be gone.
    fn delete_data(&self, id: u64) -> impl Future<Output = Result<(), CtlError>> + Send;

    /// Why this platform cannot inject `fault`, if it cannot. Every
    /// platform can kill; pausing needs the pod's process.
    fn refuses(&self, fault: FaultKind) -> Option<String> {
        match fault {
            FaultKind::Kill => None,
            FaultKind::Pause(_) => Some(format!(
                "the {} platform cannot pause a pod: that needs its process (SIGSTOP, \
                 docker pause); use --platform local or docker, or --fault kill",
                self.kind()
            )),
            FaultKind::Partition(..) | FaultKind::SlowLink { .. } => {
                Some(refuse_links(self.kind()))
            }
            FaultKind::Skew { .. } => Some(refuse_skew(self.kind())),
            FaultKind::Disk { .. } => Some(refuse_disk(self.kind())),
            // It freezes the follower that is to lag, as a pause does.
            FaultKind::Member(MemberChange::TransferLagging) => Some(format!(
                "the {} platform cannot make a follower lag: raftctl freezes its process for a \
                 second (SIGSTOP, docker pause), which the API does not reach; use --platform \
                 local or docker",
                self.kind()
            )),
            // The steps of `raftctl scale` and deletions, which every
            // platform has.
            FaultKind::Member(_) => None,
        }
    }

    /// Restarts pod `id` (gracefully) with its clocks running at
    /// `rate_ppm` millionths of real time, or on the real clock again
    /// (`None`); returns once it runs. A skewed pod goes back to the real
    /// clock by itself after `restore_after`, so a run that dies midway
    /// leaves no skewed node behind. Platforms that cannot reach a pod's
    /// process environment refuse (see [`Self::refuses`]).
    fn set_clock(
        &self,
        id: u64,
        rate_ppm: Option<u32>,
        restore_after: Duration,
    ) -> impl Future<Output = Result<(), CtlError>> + Send {
        let _ = (id, rate_ppm, restore_after);
        let why = refuse_skew(self.kind());
        async move { Err(CtlError::new(Exit::BadInput, why)) }
    }

    /// Carries out one step of a disk fault on pod `id` (see [`DiskStep`])
    /// and reports the node's state. A pod whose disk was prepared goes
    /// back to a sound disk by itself after `restore_after`, so a run that
    /// dies midway leaves no failing disk behind. Platforms that cannot
    /// reach a pod's process or volume refuse (see [`Self::refuses`]).
    fn set_disk(
        &self,
        id: u64,
        step: DiskStep,
        restore_after: Duration,
    ) -> impl Future<Output = Result<DiskState, CtlError>> + Send {
        let _ = (id, step, restore_after);
        let why = refuse_disk(self.kind());
        async move { Err(CtlError::new(Exit::BadInput, why)) }
    }

    /// Loses or delays the Raft messages of the links in `faults` (every
    /// other link passes) for `length`, after which they heal by
    /// themselves; returns once they are in force. Platforms without
    /// control of the links between pods refuse (see [`Self::refuses`]).
    fn set_links(
        &self,
        faults: &[LinkFault],
        length: Duration,
    ) -> impl Future<Output = Result<(), CtlError>> + Send {
        let _ = (faults, length);
        let why = refuse_links(self.kind());
        async move { Err(CtlError::new(Exit::BadInput, why)) }
    }

    /// Every link passes again (nothing to do where none can be cut).
    fn heal_links(&self) -> impl Future<Output = Result<(), CtlError>> + Send {
        async { Ok(()) }
    }

    /// Freezes pod `id`'s process for `length`, then lets it run on, and
    /// returns once it runs again (also if the caller gives up early: the
    /// process is never left frozen). Platforms that cannot reach a pod's
    /// process refuse (see [`Self::refuses`]).
    fn pause_pod(
        &self,
        id: u64,
        length: Duration,
    ) -> impl Future<Output = Result<(), CtlError>> + Send {
        let why = self.refuses(FaultKind::Pause(length));
        let _ = id;
        async move {
            Err(CtlError::new(
                Exit::BadInput,
                why.unwrap_or_else(|| "this platform does not implement pausing".into()),
            ))
        }
    }
}

/// Why a platform other than local refuses clock skews.
pub fn refuse_skew(kind: &str) -> String {
    format!(
        "the {kind} platform cannot run a pod's clock at another rate: raftctl chaos restarts a \
         `raftctl local` node under libfaketime (LD_PRELOAD in the process's environment) and \
         isolates the leader through the local link proxies meanwhile (use --platform local); \
         on {kind} that would need the library inside the image and a changed pod environment"
    )
}

/// Why a platform other than local refuses disk faults.
pub fn refuse_disk(kind: &str) -> String {
    format!(
        "the {kind} platform cannot make a pod's disk fail: raftctl chaos restarts a `raftctl \
         local` node under libfiu's fiu-run (failing fsyncs) or with its data on a small tmpfs \
         it then fills (use --platform local); on {kind} that would need libfiu inside the \
         image and a changed pod command, or a size-limited volume raftctl can write to"
    )
}

/// Why a platform without link proxies refuses partitions and slow links.
pub fn refuse_links(kind: &str) -> String {
    let needs = match kind {
        "docker" => {
            "on Docker it would need `docker network disconnect` (whole containers only, never \
             one way) or tc netem inside each container (the NET_ADMIN capability)"
        }
        _ => {
            "on Kubernetes it would need tc netem in each pod (the NET_ADMIN capability) or a \
             fault injector such as Chaos Mesh; a NetworkPolicy cuts whole pods only, both ways, \
             and applies with a delay"
        }
    };
    format!(
        "the {kind} platform cannot cut or slow the links between pods: raftctl chaos does that \
         through the link proxies of `raftctl local` (use --platform local); {needs}"
    )
}

/// How far the start of a deployed cluster is, on any platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Pods (containers) that pass their readiness probe, `/readyz`.
    pub ready: u64,
    pub replicas: u64,
    /// A node that leads with a lease, if one was found.
    pub leader: Option<u64>,
}

impl Progress {
    /// The one rule `raftctl deploy` waits for on every platform: every
    /// pod ready, and a leader holding its lease.
    pub fn done(&self) -> bool {
        self.ready >= self.replicas && self.leader.is_some()
    }
}

/// The client endpoints of `pods` that have one, in id order.
pub fn endpoints(pods: &[PodInfo]) -> Vec<String> {
    pods.iter().filter_map(|p| p.endpoint.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_accepts_kubectl_words_and_durations() {
        assert_eq!(Grace::parse("0"), Ok(Grace::Forced));
        assert_eq!(Grace::parse("forced"), Ok(Grace::Forced));
        assert_eq!(Grace::parse("0s"), Ok(Grace::Forced));
        assert_eq!(Grace::parse("default"), Ok(Grace::Graceful(None)));
        assert_eq!(
            Grace::parse("30s"),
            Ok(Grace::Graceful(Some(Duration::from_secs(30))))
        );
        assert!(Grace::parse("soon").is_err());
        assert_eq!(
            Grace::Graceful(Some(Duration::from_secs(5))).label(),
            "graceful 5s"
        );
    }
}
