//! The platform chosen on the command line (`--platform`), as one type.
//! It sits above both `platform` (the trait, Docker, local processes) and
//! `kube`, which implements the trait, so that neither imports the other
//! for it.

use super::cli::{PlatformArgs, PlatformKind};
use super::exit::CtlError;
use super::kube::KubePlatform;
use super::platform::docker::Docker;
use super::platform::local::Local;
use super::platform::{self, Grace, Platform, PodInfo};

/// One of the three platforms.
pub enum AnyPlatform {
    Kube(KubePlatform),
    Docker(Docker),
    Local(Local),
}

impl AnyPlatform {
    /// The platform `args` select; for Kubernetes this reads the kubeconfig.
    pub async fn from_args(args: &PlatformArgs) -> Result<AnyPlatform, CtlError> {
        Ok(match args.platform {
            PlatformKind::Kube => AnyPlatform::Kube(KubePlatform::connect(&args.kube).await?),
            PlatformKind::Docker => AnyPlatform::Docker(Docker {
                name: args.kube.name.clone(),
            }),
            PlatformKind::Local => AnyPlatform::Local(Local {
                data_dir: args.data_dir.clone(),
            }),
        })
    }

    /// Client endpoints reachable from here: the pods' own addresses, or on
    /// Kubernetes local port-forwards to them (kept open while `self` lives).
    pub async fn endpoints(&self) -> Result<Vec<String>, CtlError> {
        match self {
            AnyPlatform::Kube(k) => k.forward_all().await,
            _ => {
                let pods = self.pods().await?;
                Ok(platform::endpoints(&pods))
            }
        }
    }
}

impl Platform for AnyPlatform {
    fn kind(&self) -> &'static str {
        match self {
            AnyPlatform::Kube(p) => p.kind(),
            AnyPlatform::Docker(p) => p.kind(),
            AnyPlatform::Local(p) => p.kind(),
        }
    }

    async fn pods(&self) -> Result<Vec<PodInfo>, CtlError> {
        match self {
            AnyPlatform::Kube(p) => p.pods().await,
            AnyPlatform::Docker(p) => p.pods().await,
            AnyPlatform::Local(p) => p.pods().await,
        }
    }

    async fn delete_pod(&self, name: &str, grace: Grace) -> Result<(), CtlError> {
        match self {
            AnyPlatform::Kube(p) => p.delete_pod(name, grace).await,
            AnyPlatform::Docker(p) => p.delete_pod(name, grace).await,
            AnyPlatform::Local(p) => p.delete_pod(name, grace).await,
        }
    }

    fn refuses(&self, fault: crate::ctl::fault::FaultKind) -> Option<String> {
        match self {
            AnyPlatform::Kube(p) => p.refuses(fault),
            AnyPlatform::Docker(p) => p.refuses(fault),
            AnyPlatform::Local(p) => p.refuses(fault),
        }
    }

    async fn set_links(
        &self,
        faults: &[crate::ctl::fault::LinkFault],
        length: std::time::Duration,
    ) -> Result<(), CtlError> {
        match self {
            AnyPlatform::Kube(p) => p.set_links(faults, length).await,
            AnyPlatform::Docker(p) => p.set_links(faults, length).await,
            AnyPlatform::Local(p) => p.set_links(faults, length).await,
        }
    }

    async fn heal_links(&self) -> Result<(), CtlError> {
        match self {
            AnyPlatform::Kube(p) => p.heal_links().await,
            AnyPlatform::Docker(p) => p.heal_links().await,
            AnyPlatform::Local(p) => p.heal_links().await,
        }
    }

    async fn pause_pod(&self, id: u64, length: std::time::Duration) -> Result<(), CtlError> {
        match self {
            AnyPlatform::Kube(p) => p.pause_pod(id, length).await,
            AnyPlatform::Docker(p) => p.pause_pod(id, length).await,
            AnyPlatform::Local(p) => p.pause_pod(id, length).await,
        }
    }

    async fn set_clock(
        &self,
        id: u64,
        rate_ppm: Option<u32>,
        restore_after: std::time::Duration,
    ) -> Result<(), CtlError> {
        match self {
            AnyPlatform::Kube(p) => p.set_clock(id, rate_ppm, restore_after).await,
            AnyPlatform::Docker(p) => p.set_clock(id, rate_ppm, restore_after).await,
            AnyPlatform::Local(p) => p.set_clock(id, rate_ppm, restore_after).await,
        }
    }

    async fn set_disk(
        &self,
        id: u64,
        step: crate::ctl::fault::disk::DiskStep,
        restore_after: std::time::Duration,
    ) -> Result<crate::ctl::fault::disk::DiskState, CtlError> {
        match self {
            AnyPlatform::Kube(p) => p.set_disk(id, step, restore_after).await,
            AnyPlatform::Docker(p) => p.set_disk(id, step, restore_after).await,
            AnyPlatform::Local(p) => p.set_disk(id, step, restore_after).await,
        }
    }

    async fn start_pod(&self, id: u64) -> Result<(), CtlError> {
        match self {
            AnyPlatform::Kube(p) => p.start_pod(id).await,
            AnyPlatform::Docker(p) => p.start_pod(id).await,
            AnyPlatform::Local(p) => p.start_pod(id).await,
        }
    }

    async fn stop_pod(&self, id: u64) -> Result<(), CtlError> {
        match self {
            AnyPlatform::Kube(p) => p.stop_pod(id).await,
            AnyPlatform::Docker(p) => p.stop_pod(id).await,
            AnyPlatform::Local(p) => p.stop_pod(id).await,
        }
    }

    async fn retained_data(&self, id: u64) -> Result<Option<String>, CtlError> {
        match self {
            AnyPlatform::Kube(p) => p.retained_data(id).await,
            AnyPlatform::Docker(p) => p.retained_data(id).await,
            AnyPlatform::Local(p) => p.retained_data(id).await,
        }
    }

    async fn delete_data(&self, id: u64) -> Result<(), CtlError> {
        match self {
            AnyPlatform::Kube(p) => p.delete_data(id).await,
            AnyPlatform::Docker(p) => p.delete_data(id).await,
            AnyPlatform::Local(p) => p.delete_data(id).await,
        }
    }
}
