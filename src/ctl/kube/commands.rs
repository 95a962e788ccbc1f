//! The Kubernetes subcommands as raftctl runs them: parse, connect, act,
//! print (table, JSON or YAML).

use super::deploy;
use super::manifests::Manifests;
use super::{KubePlatform, status};
use crate::client::{Client, ClientOptions};
use crate::ctl::cli::{DeployArgs, ManifestsArgs, Output, PlatformKind, StatusArgs, ValuesArgs};
use crate::ctl::exit::{CtlError, Exit};
use crate::ctl::output::print_structured;
use crate::ctl::platform::docker::deploy as docker_deploy;
use crate::ctl::platform::docker::run::Layout;
use crate::ctl::platform::pod::{self, Values};
use crate::ctl::platform::{Applied, Platform};
use crate::ctl::signals::Signals;

fn values(args: &ValuesArgs, name: &str, namespace: &str) -> Values {
    Values {
        name: name.to_string(),
        namespace: namespace.to_string(),
        replicas: args.replicas.unwrap_or(3),
        image: args.image.clone(),
        storage_size: args.storage_size.clone(),
        storage_class: args.storage_class.clone(),
    }
}

/// `raftctl manifests`: the objects as YAML (`-o json`: a JSON list).
pub fn manifests(args: &ManifestsArgs, output: Output) -> Result<(), CtlError> {
    let m = Manifests::new(&values(&args.values, &args.name, &args.namespace));
    match output {
        Output::Json => {
            let list = serde_json::json!({
                "apiVersion": "v1",
                "kind": "List",
                "items": [m.headless, m.client, m.budget, m.statefulset],
            });
            print_structured(output, &list)
        }
        _ => {
            let yaml = m
                .to_yaml()
                .map_err(|e| CtlError::error(format!("cannot encode YAML: {e}")))?;
            print!("{yaml}");
            Ok(())
        }
    }
}

/// `raftctl deploy`, on the platform `--platform` names.
pub async fn deploy(args: &DeployArgs, output: Output) -> Result<(), CtlError> {
    match args.platform {
        PlatformKind::Kube => deploy_kube(args, output).await,
        PlatformKind::Docker => deploy_docker(args, output).await,
        PlatformKind::Local => Err(CtlError::new(
            Exit::BadInput,
            "deploy --platform local: a local cluster lives as long as the `raftctl local` that supervises it (it restarts deleted nodes and answers delete-pod and chaos); run `raftctl local --data-dir DIR` in its own terminal instead",
        )),
    }
}

/// `raftctl deploy --platform docker`: the same StatefulSet as containers.
async fn deploy_docker(args: &DeployArgs, output: Output) -> Result<(), CtlError> {
    let mut signals = Signals::install()?;
    let namespace = args
        .kube
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let layout = Layout {
        name: args.kube.name.clone(),
        namespace: namespace.clone(),
    };
    let existing = docker_deploy::existing(&layout).await?;
    let wanted = values(&args.values, &layout.name, &namespace);
    let (values, replicas) = deploy::reconcile(wanted, args.values.replicas, existing)?;
    let sts = pod::statefulset(&values);
    let replicas = replicas as u64;
    let applied = docker_deploy::apply(&layout, &sts, replicas).await?;
    report_applied(&applied, output)?;
    if args.no_wait {
        return Ok(());
    }
    let progress =
        docker_deploy::wait_ready(&layout, &sts, replicas, args.wait_timeout, signals.stop())
            .await?;
    if output == Output::Table {
        println!(
            "ready: {}/{} containers, leader node {}",
            progress.ready,
            progress.replicas,
            progress.leader.unwrap_or_default()
        );
        // raftctl's default endpoints are a local cluster's: say where
        // this one answers (the containers' addresses, or published ports).
        let containers = crate::ctl::platform::docker::Docker {
            name: layout.name.clone(),
        };
        let endpoints = crate::ctl::platform::endpoints(&containers.pods().await?);
        println!("reach it from this host with raftctl (set, get, status ...):");
        println!("  export RAFTKV_ENDPOINTS={}", endpoints.join(","));
    }
    Ok(())
}

/// `raftctl deploy --platform kube`.
async fn deploy_kube(args: &DeployArgs, output: Output) -> Result<(), CtlError> {
    let mut signals = Signals::install()?;
    let platform = KubePlatform::connect(&args.kube).await?;
    let wanted = values(&args.values, &platform.name, &platform.namespace);
    let existing = deploy::existing(&platform).await?;
    let (values, replicas) = deploy::reconcile(wanted, args.values.replicas, existing)?;
    let applied = deploy::apply(&platform, &Manifests::new(&values)).await?;
    report_applied(&applied, output)?;
    if args.no_wait {
        return Ok(());
    }
    let leader = || async {
        let endpoints = platform.endpoints_for(replicas as u64).await.ok()?;
        let client = Client::lazy(endpoints, ClientOptions::default()).ok()?;
        crate::ctl::platform::leader_with_lease(&client).await
    };
    let progress = deploy::wait_ready(
        &platform,
        u64::try_from(replicas).unwrap_or(0),
        leader,
        args.wait_timeout,
        signals.stop(),
    )
    .await?;
    if output == Output::Table {
        println!(
            "ready: {}/{} pods, leader node {}",
            progress.ready,
            progress.replicas,
            progress.leader.unwrap_or_default()
        );
    }
    Ok(())
}

fn report_applied(applied: &[Applied], output: Output) -> Result<(), CtlError> {
    match output {
        Output::Table => {
            for a in applied {
                println!("{} {}", a.object, a.action);
            }
            Ok(())
        }
        format => print_structured(format, &applied),
    }
}

/// `raftctl status --platform kube`.
pub async fn status(
    args: &StatusArgs,
    output: Output,
    tls: Option<crate::tls::ClientTls>,
) -> Result<(), CtlError> {
    let platform = KubePlatform::connect(&args.kube).await?;
    status::status(&platform, output, tls).await
}
