//! `raftctl deploy`: server-side apply of the cluster's objects with
//! raftctl's field manager, then a wait — with progress — until every pod
//! is ready and a leader holds its lease.
//!
//! Idempotent: applying the same objects again changes nothing (each object
//! is reported `unchanged`). On an existing StatefulSet the replica count
//! and the founding member count are kept as they are (scaling is `raftctl
//! scale`'s job, in its safe order), so a second deploy never fights it.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::errors::api_error;
use super::manifests::Manifests;
use super::{FIELD_MANAGER, KubePlatform};
use crate::ctl::exit::{CtlError, Exit};
use crate::ctl::platform::pod::{TlsValues, Values, selector_of};
use crate::ctl::platform::{Applied, Progress};

/// What a deploy finds of an earlier one: the StatefulSet's replica count,
/// the founding member count in its template, and the TLS its pods run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub replicas: i32,
    pub founders: i32,
    /// `None`: the pods serve plaintext.
    pub tls: Option<TlsValues>,
}

/// The StatefulSet a deploy would change, if there is one.
pub async fn existing(platform: &KubePlatform) -> Result<Option<Existing>, CtlError> {
    let api: Api<StatefulSet> = Api::namespaced(platform.client.clone(), &platform.namespace);
    let sts = api.get_opt(&platform.name).await.map_err(|e| {
        api_error(
            &format!(
                "get statefulset {} in namespace {}",
                platform.name, platform.namespace
            ),
            e,
        )
    })?;
    Ok(sts.map(|sts| {
        let spec = sts.spec;
        let replicas = spec.replicas.unwrap_or(1);
        let pod = spec.template.spec.unwrap_or_default();
        let founders = pod
            .containers
            .first()
            .and_then(|c| c.env.as_ref())
            .and_then(|env| env.iter().find(|e| e.name == "RAFTKV_REPLICAS"))
            .and_then(|e| e.value.as_ref())
            .and_then(|v| v.parse().ok())
            .unwrap_or(replicas);
        Existing {
            replicas,
            founders,
            tls: TlsValues::of_pod(&pod),
        }
    }))
}

/// Server-side applies `obj` (no forced ownership: a field another manager
/// owns, e.g. Helm's, is a conflict the user must see).
async fn apply_one<K>(api: Api<K>, obj: &K, kind: &str) -> Result<Applied, CtlError>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let object = format!("{kind}/{name}");
    let before = api
        .get_opt(&name)
        .await
        .map_err(|e| api_error(&format!("get {object}"), e))?;
    let after = api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(obj),
        )
        .await
        .map_err(|e| api_error(&format!("apply {object}"), e))?;
    let action = match before {
        None => "created",
        Some(b) if b.meta().resource_version == after.meta().resource_version => "unchanged",
        Some(_) => "configured",
    };
    Ok(Applied { object, action })
}

/// Applies every object of `manifests`, in order (Services first, so pods
/// resolve their peers as soon as they start).
pub async fn apply(
    platform: &KubePlatform,
    manifests: &Manifests,
) -> Result<Vec<Applied>, CtlError> {
    let client = &platform.client;
    let ns = &platform.namespace;
    Ok(vec![
        apply_one::<Service>(
            Api::namespaced(client.clone(), ns),
            &manifests.headless,
            "service",
        )
        .await?,
        apply_one::<Service>(
            Api::namespaced(client.clone(), ns),
            &manifests.client,
            "service",
        )
        .await?,
        apply_one::<PodDisruptionBudget>(
            Api::namespaced(client.clone(), ns),
            &manifests.budget,
            "poddisruptionbudget.policy",
        )
        .await?,
        apply_one::<StatefulSet>(
            Api::namespaced(client.clone(), ns),
            &manifests.statefulset,
            "statefulset.apps",
        )
        .await?,
    ])
}

/// The values of a deploy over what already exists: an existing
/// StatefulSet keeps its replicas and founders; asking for another replica
/// count is refused (that is `raftctl scale`), and so is turning TLS on or
/// off (see [`tls_switch`]).
pub fn reconcile(
    mut values: Values,
    asked: Option<i32>,
    existing: Option<Existing>,
) -> Result<(Values, i32), CtlError> {
    let Some(existing) = existing else {
        values.replicas = asked.unwrap_or(values.replicas);
        let replicas = values.replicas;
        return Ok((values, replicas));
    };
    let replicas = existing.replicas;
    if let Some(asked) = asked.filter(|a| *a != replicas) {
        return Err(CtlError::new(
            Exit::BadInput,
            format!(
                "statefulset {} already runs {replicas} replicas; change that with `raftctl scale {asked}` (it adds and removes members in a safe order), not deploy",
                values.name
            ),
        ));
    }
    if let Some(why) = tls_switch(&values, existing.tls.as_ref()) {
        return Err(CtlError::new(Exit::BadInput, why));
    }
    // The template carries the founders; spec.replicas stays as is.
    values.replicas = existing.founders;
    Ok((values, replicas))
}

/// Why a deploy may not turn TLS on or off in place, if it would.
///
/// The StatefulSet rolls its pods one at a time, and a member with TLS and
/// one without cannot talk (each refuses the other's handshake): the first
/// pod rolled never becomes ready and the roll stalls with a member cut
/// off. Turning TLS off by leaving out `--tls-secret` by mistake would
/// also expose the data in plaintext. A new Secret or another client
/// certificate rule rolls fine (docs/security.md, "Turning TLS on or off").
pub fn tls_switch(wanted: &Values, running: Option<&TlsValues>) -> Option<String> {
    let restart = format!(
        "delete the StatefulSet (its volumes are retained, data included) and deploy again: \
         `kubectl -n {} delete statefulset {}`, then this `raftctl deploy`; the pods start together",
        wanted.namespace, wanted.name
    );
    match (running, &wanted.tls) {
        (Some(running), None) => Some(format!(
            "statefulset {} runs with TLS from Secret {}; this deploy has no --tls-secret and would roll it to plaintext, \
             where the rolled members cannot talk to those still on TLS. To keep TLS, add `--tls-secret {}`; \
             to turn it off on purpose, {restart}",
            wanted.name, running.secret, running.secret
        )),
        (None, Some(tls)) => Some(format!(
            "statefulset {} serves plaintext; deploying it with --tls-secret {} would roll it to TLS, \
             where the rolled members cannot talk to those still on plaintext. To turn TLS on, {restart}",
            wanted.name, tls.secret
        )),
        _ => None,
    }
}

/// Waits until the StatefulSet reports `replicas` ready pods (watched with
/// kube's runtime wait helpers, not polled) and then until `leader()` names
/// a leader with a lease, printing progress; gives up after `limit` or when
/// `stop` ends. The rule is the Docker path's: `Progress::done`.
pub async fn wait_ready<L, F>(
    platform: &KubePlatform,
    replicas: u64,
    mut leader: L,
    limit: Duration,
    stop: impl Future<Output = ()>,
) -> Result<Progress, CtlError>
where
    L: FnMut() -> F,
    F: Future<Output = Option<u64>>,
{
    let start = Instant::now();
    let report = |ready: u64, leader: Option<u64>| {
        eprint!(
            "\rwaiting: {ready}/{replicas} pods ready, leader: {} ({:.0}s)   ",
            leader.map_or("none".into(), |l| format!("node {l}")),
            start.elapsed().as_secs_f64()
        );
    };
    let not_ready = |ready: u64, leader: Option<u64>| {
        eprintln!();
        CtlError::new(
            Exit::Unhealthy,
            format!(
                "not ready after {}s: {ready}/{replicas} pods ready, {}; see `kubectl -n {} describe pods -l {}` and the pods' logs",
                limit.as_secs(),
                if leader.is_some() {
                    "a leader"
                } else {
                    "no leader with a lease"
                },
                platform.namespace,
                selector_of(&platform.name)
            ),
        )
    };
    let wait = async {
        // The pods: every change of the StatefulSet's ready count arrives
        // as a watch event.
        let api: Api<StatefulSet> = Api::namespaced(platform.client.clone(), &platform.namespace);
        let ready_pods = std::sync::atomic::AtomicU64::new(0);
        let all_ready = |sts: Option<&StatefulSet>| {
            let ready = sts
                .and_then(|s| s.status.as_ref())
                .and_then(|s| s.ready_replicas)
                .map_or(0, |r| u64::try_from(r).unwrap_or(0));
            ready_pods.store(ready, std::sync::atomic::Ordering::Relaxed);
            report(ready, None);
            ready >= replicas
        };
        let left = limit.saturating_sub(start.elapsed());
        let watched = tokio::time::timeout(
            left,
            kube::runtime::wait::await_condition(api, &platform.name, all_ready),
        )
        .await;
        let ready = ready_pods.load(std::sync::atomic::Ordering::Relaxed);
        match watched {
            Err(_) => return Err(not_ready(ready, None)),
            Ok(Err(e)) => {
                return Err(CtlError::new(
                    Exit::Unreachable,
                    format!("watch statefulset {}: {e}", platform.name),
                ));
            }
            Ok(Ok(_)) => {}
        }
        // The leader: asked over gRPC, which no API condition can express.
        loop {
            let progress = Progress {
                ready,
                replicas,
                leader: leader().await,
            };
            report(ready, progress.leader);
            if progress.done() {
                eprintln!();
                return Ok(progress);
            }
            if start.elapsed() > limit {
                return Err(not_ready(ready, progress.leader));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    crate::ctl::signals::wait_or_stop(
        wait,
        stop,
        "the objects are applied and the pods keep starting; `raftctl status --platform kube` shows them",
    )
    .await
}
