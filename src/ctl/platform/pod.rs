//! What a pod of a raftkv cluster is, on every platform: the StatefulSet
//! with its pod template (image, env, ports, probes, security context) and
//! its volume claim. Kubernetes applies it as it is (with the Services
//! and the budget of `kube::manifests` around it); Docker runs each pod
//! from it as a container (`docker::run`). It mirrors the Helm chart
//! (charts/raftkv; docs/kubernetes.md says why each choice).
//!
//! The node learns its identity from its pod name (POD_NAME), its peers
//! from StatefulSet naming, and the founding member count from
//! RAFTKV_REPLICAS, which is the replica count of the first deploy and never
//! changes afterwards: `raftctl scale` patches only spec.replicas, so scaling
//! never rolls the pods.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecretVolumeSource,
    SecurityContext, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The node's default ports: client gRPC, peer gRPC, HTTP (metrics, probes).
pub const CLIENT_PORT: i32 = 7379;
pub const PEER_PORT: i32 = 7380;
pub const HTTP_PORT: i32 = 7381;
/// Where the volume `data` is mounted and the node keeps its data.
pub const DATA_DIR: &str = "/var/lib/raftkv";
/// The image's non-root user (distroless "nonroot").
const USER: i64 = 65532;
/// SIGTERM to SIGKILL: time to hand leadership over and flush.
pub const TERMINATION_GRACE_SECONDS: i64 = 30;
/// Where the TLS Secret is mounted: the chart's path, so both kinds of
/// deployment take the same Secret and docs.
pub const TLS_DIR: &str = "/etc/raftkv-tls";
/// The TLS volume's name in the pod.
const TLS_VOLUME: &str = "tls";

/// What varies between deployments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Values {
    /// StatefulSet name; pods are NAME-0, NAME-1, ...
    pub name: String,
    pub namespace: String,
    pub replicas: i32,
    pub image: String,
    pub storage_size: String,
    pub storage_class: Option<String>,
    /// TLS on the client and peer ports (`None`: plaintext).
    pub tls: Option<TlsValues>,
}

/// TLS from a Secret the user made, as the chart's
/// `tls.source=existingSecret`: one certificate for both ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsValues {
    /// Secret in the namespace with `ca.crt`, `tls.crt` and `tls.key`.
    pub secret: String,
    /// Clients must present a certificate signed by `ca.crt`.
    pub client_cert_auth: bool,
}

impl TlsValues {
    /// The node's TLS settings, pointing into the mounted Secret (the
    /// chart's `raftkv.tls.nodeEnv`).
    fn env(&self) -> Vec<EnvVar> {
        let file = |name: &str| format!("{TLS_DIR}/{name}");
        vec![
            env("RAFTKV_CERT_FILE", file("tls.crt")),
            env("RAFTKV_KEY_FILE", file("tls.key")),
            env("RAFTKV_TRUSTED_CA_FILE", file("ca.crt")),
            env("RAFTKV_CLIENT_CERT_AUTH", self.client_cert_auth.to_string()),
            env("RAFTKV_PEER_CERT_FILE", file("tls.crt")),
            env("RAFTKV_PEER_KEY_FILE", file("tls.key")),
            env("RAFTKV_PEER_TRUSTED_CA_FILE", file("ca.crt")),
        ]
    }

    /// The TLS a pod template runs, read back from what [`Self::env`] and
    /// [`Self::volume`] put in it (`None`: plaintext).
    pub fn of_pod(pod: &PodSpec) -> Option<TlsValues> {
        let env = pod.containers.first()?.env.as_ref()?;
        let value = |name: &str| {
            env.iter()
                .find(|e| e.name == name)
                .and_then(|e| e.value.as_deref())
        };
        value("RAFTKV_CERT_FILE")?;
        let secret = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == TLS_VOLUME)
            .and_then(|v| v.secret.as_ref())
            .and_then(|s| s.secret_name.clone())
            .unwrap_or_default();
        Some(TlsValues {
            secret,
            client_cert_auth: value("RAFTKV_CLIENT_CERT_AUTH") == Some("true"),
        })
    }

    /// The Secret as a volume; the kubelet rewrites its files in place when
    /// the Secret changes (no subPath), and the node reloads them.
    fn volume(&self) -> Volume {
        Volume {
            name: TLS_VOLUME.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(self.secret.clone()),
                // Owner and fsGroup read: the key is for the node alone.
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        }
    }

    fn mount(&self) -> VolumeMount {
        VolumeMount {
            name: TLS_VOLUME.into(),
            mount_path: TLS_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        }
    }
}

impl Values {
    pub fn headless_service(&self) -> String {
        format!("{}-headless", self.name)
    }

    /// Labels that select this cluster's pods.
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".into(), "raftkv".into()),
            ("app.kubernetes.io/instance".into(), self.name.clone()),
        ])
    }

    /// The label selector as a query string (`a=b,c=d`).
    pub fn selector(&self) -> String {
        selector_of(&self.name)
    }

    /// Labels of every object of this cluster.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels();
        labels.insert("app.kubernetes.io/component".into(), "server".into());
        labels.insert("app.kubernetes.io/managed-by".into(), "raftctl".into());
        labels
    }

    /// The metadata of this cluster's object `name`.
    pub fn meta(&self, name: String) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels()),
            ..ObjectMeta::default()
        }
    }
}

/// The label selector of cluster `name`'s pods, as a query string.
pub fn selector_of(name: &str) -> String {
    format!("app.kubernetes.io/name=raftkv,app.kubernetes.io/instance={name}")
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn env_from_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// The node's settings: identity from the pod, peers from StatefulSet
/// naming, and the TLS files when TLS is on.
fn node_env(v: &Values) -> Vec<EnvVar> {
    let mut env_vars = vec![
        env_from_field("POD_NAME", "metadata.name"),
        env_from_field("RAFTKV_NAMESPACE", "metadata.namespace"),
        env("RAFTKV_STATEFULSET", v.name.clone()),
        env("RAFTKV_SERVICE", v.headless_service()),
        // The founding members: fixed at the first deploy (see module doc).
        env("RAFTKV_REPLICAS", v.replicas.to_string()),
        // Pods added by `raftctl scale`, and pods whose volume was lost,
        // join by themselves (the chart's cluster.autoJoin, default on).
        env("RAFTKV_AUTO_JOIN", "true"),
        env("RAFTKV_DATA_DIR", DATA_DIR),
        env("RAFTKV_LOG_FORMAT", "json"),
    ];
    env_vars.extend(v.tls.iter().flat_map(TlsValues::env));
    env_vars
}

fn container(v: &Values) -> Container {
    let container_port = |name: &str, number| ContainerPort {
        name: Some(name.into()),
        container_port: number,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    };
    Container {
        name: "raftkv".into(),
        image: Some(v.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        env: Some(node_env(v)),
        ports: Some(vec![
            container_port("client", CLIENT_PORT),
            container_port("peer", PEER_PORT),
            container_port("http", HTTP_PORT),
        ]),
        // /livez never depends on quorum (a partition must not restart
        // pods); /readyz does. The startup probe gives first boot, which
        // waits for every founder, time before liveness counts.
        // The chart's values (charts/raftkv/values.yaml `probes`).
        startup_probe: Some(http_probe("/livez", 5, 60)),
        liveness_probe: Some(http_probe("/livez", 10, 6)),
        readiness_probe: Some(http_probe("/readyz", 2, 3)),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".into(), Quantity("100m".into())),
                ("memory".into(), Quantity("128Mi".into())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".into(),
                Quantity("512Mi".into()),
            )])),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            seccomp_profile: Some(runtime_default()),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(
            std::iter::once(VolumeMount {
                name: "data".into(),
                mount_path: DATA_DIR.into(),
                ..VolumeMount::default()
            })
            .chain(v.tls.as_ref().map(TlsValues::mount))
            .collect(),
        ),
        ..Container::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        ..SeccompProfile::default()
    }
}

/// The StatefulSet of the cluster `v` describes.
pub fn statefulset(v: &Values) -> StatefulSet {
    let pod = PodSpec {
        containers: vec![container(v)],
        volumes: v.tls.as_ref().map(|t| vec![t.volume()]),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(USER),
            run_as_group: Some(USER),
            fs_group: Some(USER),
            fs_group_change_policy: Some("OnRootMismatch".into()),
            seccomp_profile: Some(runtime_default()),
            ..PodSecurityContext::default()
        }),
        ..PodSpec::default()
    };
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".into()),
            labels: Some(v.selector_labels()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: v.storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".into(),
                    Quantity(v.storage_size.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    };
    StatefulSet {
        metadata: v.meta(v.name.clone()),
        spec: StatefulSetSpec {
            replicas: Some(v.replicas),
            service_name: Some(v.headless_service()),
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(v.selector_labels()),
                ..LabelSelector::default()
            },
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                ..StatefulSetUpdateStrategy::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(v.labels()),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            volume_claim_templates: Some(vec![claim]),
            // Volumes outlive the StatefulSet and a scale-down (the chart's
            // default): they hold the only copy of a member's log.
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Retain".into()),
                    when_scaled: Some("Retain".into()),
                },
            ),
            ..StatefulSetSpec::default()
        },
        ..StatefulSet::default()
    }
}

// Its fixture serves the tests of the objects built around the StatefulSet.
#[cfg(test)]
pub(crate) mod tests;
