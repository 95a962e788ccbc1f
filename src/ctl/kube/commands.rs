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
use crate::ctl::platform::pod::{self, TlsValues, Values};
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
        tls: args.tls_secret.as_ref().map(|secret| TlsValues {
            secret: secret.clone(),
            client_cert_auth: args.tls_client_cert_auth.unwrap_or(true),
        }),
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

/// `raftctl deploy`, on the platform `--platform` names; `options` (TLS,
/// credentials) are raftctl's own, for the wait for a leader.
pub async fn deploy(
    args: &DeployArgs,
    output: Output,
    options: ClientOptions,
) -> Result<(), CtlError> {
    match args.platform {
        PlatformKind::Kube => deploy_kube(args, output, options).await,
        PlatformKind::Docker if args.values.tls_secret.is_some() => Err(CtlError::new(
            Exit::BadInput,
            "deploy --platform docker: --tls-secret names a Kubernetes Secret, which Docker does not have; \
             deploy to Kubernetes, or run TLS on one machine with `raftctl local --tls`",
        )),
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

/// Whether raftctl can ask a cluster of `values` for its leader: over TLS
/// it needs the CA, and a client certificate where the nodes demand one.
/// Checked before anything is applied.
pub fn check_wait_tls(values: &Values, options: &ClientOptions) -> Result<(), CtlError> {
    let Some(tls) = &values.tls else {
        return Ok(());
    };
    let missing = match &options.tls {
        None => "--cacert (and --cert, --key)",
        Some(t) if tls.client_cert_auth && t.files().files().identity.is_none() => {
            "--cert and --key"
        }
        Some(_) => return Ok(()),
    };
    Err(CtlError::new(
        Exit::BadInput,
        format!(
            "deploy --tls-secret {}: waiting for a leader talks TLS to the pods, so raftctl needs {missing} \
             (the CA of the Secret and a client certificate it signed); or deploy with --no-wait",
            tls.secret
        ),
    ))
}

/// `raftctl deploy --platform kube`.
async fn deploy_kube(
    args: &DeployArgs,
    output: Output,
    options: ClientOptions,
) -> Result<(), CtlError> {
    let mut signals = Signals::install()?;
    let platform = KubePlatform::connect(&args.kube).await?;
    let wanted = values(&args.values, &platform.name, &platform.namespace);
    if !args.no_wait {
        check_wait_tls(&wanted, &options)?;
    }
    let existing = deploy::existing(&platform).await?;
    let (values, replicas) = deploy::reconcile(wanted, args.values.replicas, existing)?;
    let applied = deploy::apply(&platform, &Manifests::new(&values)).await?;
    report_applied(&applied, output)?;
    if args.no_wait {
        return Ok(());
    }
    let leader = || async {
        let endpoints = platform.endpoints_for(replicas as u64).await.ok()?;
        let client = Client::lazy(endpoints, options.clone()).ok()?;
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
