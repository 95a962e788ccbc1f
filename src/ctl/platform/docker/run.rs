//! A StatefulSet's pod template as `docker run` arguments: the container
//! gets the env, args, mounts, user and security settings the template
//! gives a pod. What only a kubelet provides is emulated here, each in one
//! place: downward-API env (pod name, namespace), ConfigMap volumes (a
//! Docker volume holding the ConfigMap's files, mounted read-only), the
//! volume claim (a named volume) and the StatefulSet's DNS (hostname and a
//! network alias). A setting Docker cannot express is an error, never
//! dropped silently.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec, SecurityContext};

use crate::ctl::exit::{CtlError, Exit};

/// The Kubernetes cluster domain the pods' DNS names end in.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// Where one StatefulSet's pods live on Docker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The StatefulSet's name: pod `i` is `NAME-i`, so is its container.
    pub name: String,
    /// The namespace the pods pretend to live in (their DNS names carry it).
    pub namespace: String,
}

impl Layout {
    pub fn container(&self, i: u64) -> String {
        format!("{}-{i}", self.name)
    }

    pub fn network(&self) -> String {
        format!("{}-net", self.name)
    }

    /// The named volume of claim `claim` of pod `i` (Kubernetes names the
    /// claim `CLAIM-NAME-i`; here every object starts with NAME).
    pub fn claim_volume(&self, claim: &str, i: u64) -> String {
        format!("{}-{claim}-{i}", self.name)
    }

    /// The named volume holding ConfigMap `config_map`'s files.
    pub fn config_volume(&self, config_map: &str) -> String {
        format!("{}-cm-{config_map}", self.name)
    }

    /// The Docker label every object of this cluster carries.
    pub fn label(&self) -> String {
        format!("{LABEL}={}", self.name)
    }
}

/// The label key of the Docker objects `raftctl deploy` creates.
pub const LABEL: &str = "io.raftkv.cluster";

fn bad(what: impl Into<String>) -> CtlError {
    CtlError::new(
        Exit::BadInput,
        format!("the pod template cannot run on Docker: {}", what.into()),
    )
}

fn pod_spec(sts: &StatefulSet) -> Result<(&PodSpec, &Container), CtlError> {
    let pod = sts
        .spec
        .template
        .spec
        .as_ref()
        .ok_or_else(|| bad("no pod spec"))?;
    match pod.containers.as_slice() {
        [c] => Ok((pod, c)),
        other => Err(bad(format!("{} containers (one is emulated)", other.len()))),
    }
}

/// The headless Service the pods' DNS names are under.
pub fn service_name(sts: &StatefulSet) -> String {
    sts.spec.service_name.clone().unwrap_or_default()
}

/// The container port named `name` of the template.
pub fn container_port(sts: &StatefulSet, name: &str) -> Result<u16, CtlError> {
    let (_, c) = pod_spec(sts)?;
    c.ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some(name))
        .and_then(|p| u16::try_from(p.container_port).ok())
        .ok_or_else(|| bad(format!("no container port named {name}")))
}

/// The readiness probe's HTTP path and port.
pub fn readiness(sts: &StatefulSet) -> Result<(String, u16), CtlError> {
    let (_, c) = pod_spec(sts)?;
    let get = c
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .ok_or_else(|| bad("the readiness probe is not an HTTP GET"))?;
    let port = match &get.port {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(p) => {
            u16::try_from(*p).map_err(|_| bad("readiness port out of range"))?
        }
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(name) => {
            container_port(sts, name)?
        }
    };
    Ok((get.path.clone().unwrap_or_else(|| "/".into()), port))
}

/// Pod `i`'s DNS name, the headless Service's record.
pub fn dns_name(layout: &Layout, sts: &StatefulSet, i: u64) -> String {
    format!(
        "{}.{}.{}.svc.{CLUSTER_DOMAIN}",
        layout.container(i),
        service_name(sts),
        layout.namespace
    )
}

fn env_value(e: &EnvVar, pod: &str, namespace: &str) -> Result<String, CtlError> {
    if let Some(v) = &e.value {
        return Ok(v.clone());
    }
    let field = e
        .value_from
        .as_ref()
        .and_then(|f| f.field_ref.as_ref())
        .map(|f| f.field_path.as_str());
    match field {
        Some("metadata.name") => Ok(pod.to_string()),
        Some("metadata.namespace") => Ok(namespace.to_string()),
        other => Err(bad(format!("env {}: {other:?} is not emulated", e.name))),
    }
}

/// Docker flags for the pod's and the container's security context (the
/// container's setting wins, as in Kubernetes).
fn security_flags(pod: &PodSpec, c: &Container) -> Result<Vec<String>, CtlError> {
    let p = pod.security_context.clone().unwrap_or_default();
    let s: SecurityContext = c.security_context.clone().unwrap_or_default();
    let mut flags = Vec::new();
    match (
        s.run_as_user.or(p.run_as_user),
        s.run_as_group.or(p.run_as_group),
    ) {
        (Some(u), Some(g)) => flags.extend(["--user".into(), format!("{u}:{g}")]),
        (Some(u), None) => flags.extend(["--user".into(), u.to_string()]),
        (None, Some(_)) => return Err(bad("runAsGroup without runAsUser")),
        (None, None) => {}
    }
    if s.read_only_root_filesystem == Some(true) {
        flags.push("--read-only".into());
    }
    if s.allow_privilege_escalation == Some(false) {
        flags.extend(["--security-opt".into(), "no-new-privileges".into()]);
    }
    if s.privileged == Some(true) {
        return Err(bad("privileged containers are not emulated"));
    }
    let caps = s.capabilities.unwrap_or_default();
    for cap in caps.drop.unwrap_or_default() {
        flags.extend(["--cap-drop".into(), cap]);
    }
    for cap in caps.add.unwrap_or_default() {
        flags.extend(["--cap-add".into(), cap]);
    }
    let seccomp = s.seccomp_profile.or(p.seccomp_profile);
    if let Some(kind) = seccomp.map(|s| s.type_) {
        // Docker's default profile is the runtime default.
        if kind != "RuntimeDefault" {
            return Err(bad(format!("seccomp profile {kind}")));
        }
    }
    Ok(flags)
}

/// The ConfigMaps the template mounts: ConfigMap name → mount path.
pub fn config_mounts(sts: &StatefulSet) -> Result<BTreeMap<String, String>, CtlError> {
    let (pod, c) = pod_spec(sts)?;
    let mut mounts = BTreeMap::new();
    for m in c.volume_mounts.iter().flatten() {
        let volume = pod.volumes.iter().flatten().find(|v| v.name == m.name);
        if let Some(cm) = volume.and_then(|v| v.config_map.as_ref()) {
            mounts.insert(cm.name.clone(), m.mount_path.clone());
        }
    }
    Ok(mounts)
}

/// `docker run` arguments (after `run`) for pod `i` of `sts`.
pub fn run_args(layout: &Layout, sts: &StatefulSet, i: u64) -> Result<Vec<String>, CtlError> {
    let (pod, c) = pod_spec(sts)?;
    let name = layout.container(i);
    let mut a: Vec<String> = vec![
        "-d".into(),
        "--name".into(),
        name.clone(),
        "--label".into(),
        layout.label(),
        "--hostname".into(),
        name.clone(),
        "--network".into(),
        layout.network(),
        "--network-alias".into(),
        dns_name(layout, sts, i),
    ];
    if let Some(grace) = pod.termination_grace_period_seconds {
        a.extend(["--stop-timeout".into(), grace.to_string()]);
    }
    let claims = claim_names(sts);
    for m in c.volume_mounts.iter().flatten() {
        let volume = pod.volumes.iter().flatten().find(|v| v.name == m.name);
        let (source, read_only) = if claims.contains(&m.name) {
            (layout.claim_volume(&m.name, i), false)
        } else if let Some(cm) = volume.and_then(|v| v.config_map.as_ref()) {
            (layout.config_volume(&cm.name), true)
        } else {
            return Err(bad(format!(
                "volume {}: neither a volume claim nor a ConfigMap",
                m.name
            )));
        };
        let ro = if read_only || m.read_only == Some(true) {
            ":ro"
        } else {
            ""
        };
        a.extend(["-v".into(), format!("{source}:{}{ro}", m.mount_path)]);
    }
    for e in c.env.iter().flatten() {
        let value = env_value(e, &name, &layout.namespace)?;
        a.extend(["-e".into(), format!("{}={value}", e.name)]);
    }
    a.extend(security_flags(pod, c)?);
    if c.command.as_ref().is_some_and(|v| !v.is_empty()) {
        return Err(bad("a command other than the image's entrypoint"));
    }
    a.push(c.image.clone().ok_or_else(|| bad("no image"))?);
    a.extend(c.args.iter().flatten().cloned());
    Ok(a)
}

/// The names of the StatefulSet's volume claim templates (one Docker volume
/// each per member).
pub(super) fn claim_names(sts: &StatefulSet) -> Vec<String> {
    sts.spec
        .volume_claim_templates
        .iter()
        .flatten()
        .filter_map(|t| t.metadata.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::platform::pod::{Values, statefulset};

    fn sts() -> StatefulSet {
        statefulset(&Values {
            name: "kv".into(),
            namespace: "ns".into(),
            replicas: 3,
            image: "raftkv:t".into(),
            storage_size: "1Gi".into(),
            storage_class: None,
            tls: None,
        })
    }

    #[test]
    fn the_pod_template_becomes_docker_run_arguments() {
        let layout = Layout {
            name: "kv".into(),
            namespace: "ns".into(),
        };
        let sts = sts();
        let a = run_args(&layout, &sts, 2).unwrap();
        let text = a.join(" ");
        for expected in [
            "--name kv-2",
            "--hostname kv-2",
            "--network kv-net",
            "--network-alias kv-2.kv-headless.ns.svc.cluster.local",
            "--stop-timeout 30",
            "-v kv-data-2:/var/lib/raftkv",
            "--user 65532:65532",
            "--read-only",
            "--security-opt no-new-privileges",
            "--cap-drop ALL",
            "--label io.raftkv.cluster=kv",
        ] {
            assert!(text.contains(expected), "{expected:?} missing in {text}");
        }
        // Downward-API env: the pod's own name and namespace.
        assert!(
            a.iter()
                .any(|e| e.ends_with("=kv-2") && e.contains("POD_NAME"))
        );
        assert!(a.iter().any(|e| e == "RAFTKV_NAMESPACE=ns"), "{text}");
        // The image comes after every flag (the node is the entrypoint).
        assert_eq!(a.last().unwrap(), "raftkv:t");
        assert_eq!(readiness(&sts).unwrap(), ("/readyz".into(), 7381));
        assert_eq!(container_port(&sts, "client").unwrap(), 7379);
    }

    /// Every argument, in order: the container a deploy made must match
    /// what a later deploy or scale makes (its template hash is of these).
    #[test]
    fn the_run_arguments_are_exactly_these() {
        let layout = Layout {
            name: "kv".into(),
            namespace: "ns".into(),
        };
        let expected = [
            "-d",
            "--name",
            "kv-2",
            "--label",
            "io.raftkv.cluster=kv",
            "--hostname",
            "kv-2",
            "--network",
            "kv-net",
            "--network-alias",
            "kv-2.kv-headless.ns.svc.cluster.local",
            "--stop-timeout",
            "30",
            "-v",
            "kv-data-2:/var/lib/raftkv",
            "-e",
            "POD_NAME=kv-2",
            "-e",
            "RAFTKV_NAMESPACE=ns",
            "-e",
            "RAFTKV_STATEFULSET=kv",
            "-e",
            "RAFTKV_SERVICE=kv-headless",
            "-e",
            "RAFTKV_REPLICAS=3",
            "-e",
            "RAFTKV_AUTO_JOIN=true",
            "-e",
            "RAFTKV_DATA_DIR=/var/lib/raftkv",
            "-e",
            "RAFTKV_LOG_FORMAT=json",
            "--user",
            "65532:65532",
            "--read-only",
            "--security-opt",
            "no-new-privileges",
            "--cap-drop",
            "ALL",
            "raftkv:t",
        ];
        assert_eq!(run_args(&layout, &sts(), 2).unwrap(), expected);
    }

    #[test]
    fn what_docker_cannot_express_is_refused() {
        let layout = Layout {
            name: "kv".into(),
            namespace: "ns".into(),
        };
        let mut sts = sts();
        let pod = sts.spec.template.spec.as_mut().unwrap();
        pod.containers[0].env.as_mut().unwrap().push(EnvVar {
            name: "NODE".into(),
            value_from: Some(k8s_openapi::api::core::v1::EnvVarSource {
                field_ref: Some(k8s_openapi::api::core::v1::ObjectFieldSelector {
                    field_path: "spec.nodeName".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..EnvVar::default()
        });
        let e = run_args(&layout, &sts, 0).unwrap_err();
        assert_eq!(e.exit, Exit::BadInput);
        assert!(e.message.contains("spec.nodeName"), "{e}");
    }
}
