//! The fault commands: `delete-pod` and `chaos`, on any platform.

use std::time::Duration;

use super::any_platform::AnyPlatform;
use super::chaos::{self, ChaosPlan, WorkloadConfig};
use super::cli::{ChaosArgs, DeletePodArgs, KillTarget, Output};
use super::exit::CtlError;
use super::platform::{self, Platform, Target};
use super::signals::Signals;
use crate::client::{Client, ClientOptions};
use crate::tls::ClientTls;

/// `raftctl delete-pod`: resolves the target, deletes it, says what it did.
pub async fn delete_pod(
    args: &DeletePodArgs,
    output: Output,
    tls: Option<ClientTls>,
) -> Result<(), CtlError> {
    let platform = AnyPlatform::from_args(&args.platform).await?;
    let target = match (&args.pod, args.leader) {
        (Some(name), _) => Target::Name(name.clone()),
        (None, true) => Target::Leader,
        (None, false) => Target::Random,
    };
    let pods = platform.pods().await?;
    let leader = if target == Target::Leader {
        let endpoints = platform.endpoints().await?;
        let options = ClientOptions {
            tls,
            ..ClientOptions::default()
        };
        platform::leader_of(&Client::lazy(endpoints, options)?).await
    } else {
        None
    };
    let pod = platform::choose(&target, &pods, leader)?;
    platform.delete_pod(&pod.name, args.grace).await?;
    #[derive(serde::Serialize)]
    struct Deleted<'a> {
        platform: &'a str,
        pod: &'a str,
        node: u64,
        grace: String,
    }
    let deleted = Deleted {
        platform: platform.kind(),
        pod: &pod.name,
        node: pod.id,
        grace: args.grace.label(),
    };
    match output {
        Output::Table => println!("deleted {} (node {}, {})", pod.name, pod.id, deleted.grace),
        format => super::output::print_structured(format, &deleted)?,
    }
    Ok(())
}

/// `raftctl chaos`.
pub async fn chaos(
    args: &ChaosArgs,
    output: Output,
    tls: Option<ClientTls>,
) -> Result<(), CtlError> {
    let mut signals = Signals::install()?;
    let platform = AnyPlatform::from_args(&args.platform).await?;
    // Before anything is asked of the platform: a refusal changes nothing.
    let (faults, left_out) = args
        .faults
        .on_platform(|f| platform.refuses(f))
        .map_err(|why| CtlError::new(crate::ctl::exit::Exit::BadInput, why))?;
    for line in &left_out {
        eprintln!("{line}");
    }
    let endpoints = platform.endpoints().await?;
    let plan = ChaosPlan {
        duration: args.duration,
        interval: args.interval,
        target: match args.kill {
            KillTarget::Leader => Target::Leader,
            KillTarget::Random => Target::Random,
        },
        faults,
        grace: args.grace,
        workload: WorkloadConfig {
            clients: args.clients.max(1),
            registers: usize::from(args.keys),
            pause: args.pause,
            prefix: format!("chaos-{:08x}", rand::random::<u32>()),
            op_timeout: Duration::from_secs(5),
            tls,
        },
        settle: Duration::from_secs(60),
    };
    eprintln!(
        "chaos on {}: {} endpoints, {:.0}s, a fault every {:.0}s; Ctrl-C ends early (the history is still checked)",
        platform.kind(),
        endpoints.len(),
        args.duration.as_secs_f64(),
        args.interval.as_secs_f64()
    );
    let mut report = chaos::run(&platform, endpoints, &plan, &mut signals).await?;
    report.left_out = left_out;
    chaos::finish(&report, output)
}
