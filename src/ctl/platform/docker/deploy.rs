//! `raftctl deploy --platform docker`: the StatefulSet of `raftctl
//! manifests` as Docker objects — a network (the headless Service's DNS:
//! each container has its pod's DNS name as an alias), a named volume per
//! pod (the volume claim), a volume per ConfigMap, and one container per
//! pod started from the pod template ([`super::run`]) — then a wait until
//! every container passes its readiness probe and a leader holds its lease.
//!
//! Idempotent: an object that exists is left as it is (`unchanged`; a
//! stopped container is started). A container created from another pod
//! template (another image or settings) is refused with what to do: a
//! rolling update on Docker is not built.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::run::{self, LABEL, Layout};
use super::{docker, inspect};
use crate::client::{Client, ClientOptions};
use crate::ctl::exit::{CtlError, Exit};
use crate::ctl::kube::deploy::Existing;
use crate::ctl::platform::{Applied, Progress};

/// The label carrying a hash of a container's `docker run` arguments.
const TEMPLATE_LABEL: &str = "io.raftkv.template";

/// A stable hash (FNV-1a) of the run arguments, as hex.
fn template_hash(args: &[String]) -> String {
    let hash = args
        .iter()
        .flat_map(|a| a.bytes().chain([0]))
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("{hash:016x}")
}

async fn ensure_network(layout: &Layout) -> Result<Applied, CtlError> {
    let name = layout.network();
    let object = format!("network/{name}");
    if inspect("network", &name, "{{.Id}}").await?.is_some() {
        return Ok(Applied {
            object,
            action: "unchanged",
        });
    }
    docker(&["network", "create", "--label", &layout.label(), &name]).await?;
    Ok(Applied {
        object,
        action: "created",
    })
}

pub(super) async fn ensure_volume(layout: &Layout, name: &str) -> Result<Applied, CtlError> {
    let object = format!("volume/{name}");
    if inspect("volume", name, "{{.Name}}").await?.is_some() {
        return Ok(Applied {
            object,
            action: "unchanged",
        });
    }
    docker(&["volume", "create", "--label", &layout.label(), name]).await?;
    Ok(Applied {
        object,
        action: "created",
    })
}

pub(super) async fn ensure_container(
    layout: &Layout,
    args: Vec<String>,
    i: u64,
) -> Result<Applied, CtlError> {
    let name = layout.container(i);
    let object = format!("container/{name}");
    let hash = template_hash(&args);
    let format =
        format!("{{{{index .Config.Labels \"{TEMPLATE_LABEL}\"}}}} {{{{.State.Running}}}}");
    if let Some(found) = inspect("container", &name, &format).await? {
        let (theirs, running) = found.trim().split_once(' ').unwrap_or((found.trim(), ""));
        if theirs != hash {
            return Err(CtlError::new(
                Exit::BadInput,
                format!(
                    "container {name} was created from another pod template (image or settings differ); rolling updates on Docker are not built: remove it (`docker rm -f {name}`, its volume stays) and deploy again"
                ),
            ));
        }
        if running == "true" {
            return Ok(Applied {
                object,
                action: "unchanged",
            });
        }
        docker(&["start", &name]).await?;
        return Ok(Applied {
            object,
            action: "started",
        });
    }
    let mut full = vec![
        "run".to_string(),
        "--label".into(),
        format!("{TEMPLATE_LABEL}={hash}"),
    ];
    full.extend(args);
    let full: Vec<&str> = full.iter().map(String::as_str).collect();
    docker(&full).await?;
    Ok(Applied {
        object,
        action: "created",
    })
}

/// Creates what is missing of the StatefulSet `sts` on Docker, `replicas`
/// pods.
pub async fn apply(
    layout: &Layout,
    sts: &StatefulSet,
    replicas: u64,
) -> Result<Vec<Applied>, CtlError> {
    let mut applied = vec![ensure_network(layout).await?];
    if let Some(config_map) = run::config_mounts(sts)?.into_keys().next() {
        return Err(CtlError::error(format!(
            "the pod template mounts ConfigMap {config_map}: not emulated on Docker"
        )));
    }
    let claims = run::claim_names(sts);
    for i in 0..replicas {
        for claim in &claims {
            applied.push(ensure_volume(layout, &layout.claim_volume(claim, i)).await?);
        }
    }
    for i in 0..replicas {
        let args = run::run_args(layout, sts, i)?;
        applied.push(ensure_container(layout, args, i).await?);
    }
    Ok(applied)
}

/// The cluster's replica count and founding member count if it exists:
/// the containers of `layout`, and the RAFTKV_REPLICAS they were made with
/// (after `raftctl scale` the two differ; the founders never change).
/// Docker runs no TLS (`deploy --tls-secret` is refused there).
pub async fn existing(layout: &Layout) -> Result<Option<Existing>, CtlError> {
    let replicas = existing_replicas(layout).await?;
    if replicas == 0 {
        return Ok(None);
    }
    let docker = super::Docker {
        name: layout.name.clone(),
    };
    let founders = docker.template().await?.founders;
    let replicas = i32::try_from(replicas).map_err(|_| CtlError::error("too many containers"))?;
    Ok(Some(Existing {
        replicas,
        founders,
        tls: None,
    }))
}

/// The containers of `layout` that exist, by ordinal (none: `0`).
pub async fn existing_replicas(layout: &Layout) -> Result<u64, CtlError> {
    let filter = format!("label={LABEL}={}", layout.name);
    let names = docker(&["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"]).await?;
    Ok(names
        .lines()
        .filter(|n| super::ordinal(&layout.name, n.trim()).is_some())
        .count() as u64)
}

/// A minimal HTTP GET (a kubelet's probe): the status code.
async fn probe(address: &str, path: &str) -> Option<u16> {
    let limit = Duration::from_secs(2);
    let mut stream = tokio::time::timeout(limit, tokio::net::TcpStream::connect(address))
        .await
        .ok()?
        .ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    tokio::time::timeout(limit, stream.read_to_end(&mut answer))
        .await
        .ok()?
        .ok()?;
    String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The IP of container `name` on the cluster's network.
async fn ip_of(layout: &Layout, name: &str) -> Option<String> {
    let format = format!(
        "{{{{with index .NetworkSettings.Networks \"{}\"}}}}{{{{.IPAddress}}}}{{{{end}}}}",
        layout.network()
    );
    inspect("container", name, &format)
        .await
        .ok()
        .flatten()
        .map(|ip| ip.trim().to_string())
        .filter(|ip| !ip.is_empty())
}

/// Waits until `replicas` containers pass the readiness probe and one node
/// leads with a lease, printing progress; gives up after `limit` or when
/// `stop` ends.
pub async fn wait_ready(
    layout: &Layout,
    sts: &StatefulSet,
    replicas: u64,
    limit: Duration,
    stop: impl Future<Output = ()>,
) -> Result<Progress, CtlError> {
    let (path, http_port) = run::readiness(sts)?;
    let client_port = run::container_port(sts, "client")?;
    let start = Instant::now();
    let poll = async {
        loop {
            let mut ready = 0;
            let mut endpoints = Vec::new();
            for i in 0..replicas {
                let Some(ip) = ip_of(layout, &layout.container(i)).await else {
                    continue;
                };
                if probe(&format!("{ip}:{http_port}"), &path).await == Some(200) {
                    ready += 1;
                }
                endpoints.push(format!("{ip}:{client_port}"));
            }
            let leader = if ready > replicas / 2 {
                leader_with_lease(endpoints).await
            } else {
                None
            };
            eprint!(
                "\rwaiting: {ready}/{replicas} containers ready, leader: {} ({:.0}s)   ",
                leader.map_or("none".into(), |l| format!("node {l}")),
                start.elapsed().as_secs_f64()
            );
            let progress = Progress {
                ready,
                replicas,
                leader,
            };
            if progress.done() {
                eprintln!();
                return Ok(progress);
            }
            if start.elapsed() > limit {
                eprintln!();
                return Err(CtlError::new(
                    Exit::Unhealthy,
                    format!(
                        "not ready after {}s: {ready}/{replicas} containers ready, {}; see `docker logs {}`",
                        limit.as_secs(),
                        if leader.is_some() {
                            "a leader"
                        } else {
                            "no leader with a lease"
                        },
                        layout.container(0)
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    crate::ctl::signals::wait_or_stop(
        poll,
        stop,
        "the containers exist and keep starting; `raftctl status` shows them",
    )
    .await
}

async fn leader_with_lease(endpoints: Vec<String>) -> Option<u64> {
    let options = ClientOptions {
        attempt_timeout: Duration::from_millis(700),
        connect_timeout: Duration::from_millis(300),
        ..ClientOptions::default()
    };
    let client = Client::lazy(endpoints, options).ok()?;
    crate::ctl::platform::leader_with_lease(&client).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_hash_sees_every_argument() {
        let a = vec!["-e".to_string(), "A=1".into()];
        let b = vec!["-e".to_string(), "A=2".into()];
        let c = vec!["-eA".to_string(), "=1".into()];
        assert_eq!(template_hash(&a), template_hash(&a.clone()));
        assert_ne!(template_hash(&a), template_hash(&b));
        assert_ne!(template_hash(&a), template_hash(&c));
    }
}
