//! The pod template of the chart's StatefulSet, turned into `docker run`
//! arguments. It is read from Helm's own render (`scripts/chart.py render
//! --json`), never written a second time here: the containers get exactly
//! the env, args, mounts, user and security settings the chart gives a pod.
//! What only a kubelet provides is emulated, each in one place below:
//! downward-API env (pod name, namespace), ConfigMap volumes (files in a
//! directory mounted read-only), Secret volumes (the directory of files the
//! test made for that Secret, mounted read-only), the volume claim (a named
//! volume) and the StatefulSet's DNS (hostname and network alias).

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The namespace the pods pretend to live in.
pub const NAMESPACE: &str = "default";

/// What `docker run` needs to start one pod of the StatefulSet.
#[derive(Clone, Debug)]
pub struct PodTemplate {
    /// StatefulSet name: pod `i` is `<sts>-<i>`.
    pub statefulset: String,
    /// Headless Service: pod DNS is `<pod>.<service>.<ns>.svc.cluster.local`.
    pub service: String,
    pub image: String,
    /// `NAME=value`, with downward-API references left to [`Self::env_for`].
    env: Vec<(String, EnvValue)>,
    args: Vec<String>,
    /// (host directory with a ConfigMap's or a Secret's files, mount path),
    /// mounted read-only.
    config_mounts: Vec<(PathBuf, String)>,
    /// Where the data volume (the volume claim) is mounted.
    pub data_path: String,
    /// `docker run` flags for the security context.
    security: Vec<String>,
    pub grace_seconds: u64,
    pub client_port: u16,
    pub http_port: u16,
    /// Path of the readiness probe.
    pub readiness_path: String,
}

#[derive(Clone, Debug)]
enum EnvValue {
    Literal(String),
    PodName,
    Namespace,
}

/// The files of the Secrets a test made: Secret name to a host directory
/// holding one file per key (as the kubelet mounts a Secret).
pub type Secrets = BTreeMap<String, PathBuf>;

/// Renders the chart with default values (only the image changed, and
/// `sets`) and reads its StatefulSet. `config_dir` receives the ConfigMap
/// files; a Secret volume is mounted from its directory in `secrets`.
pub fn from_chart(
    root: &Path,
    image: &str,
    config_dir: &Path,
    sets: &[&str],
    secrets: &Secrets,
) -> PodTemplate {
    let (repo, tag) = image.rsplit_once(':').expect("image has a tag");
    let mut render = Command::new("python3");
    render
        .current_dir(root)
        .args(["scripts/chart.py", "render", "--json"])
        .args(["--set", &format!("image.repository={repo},image.tag={tag}")]);
    for set in sets {
        render.args(["--set", set]);
    }
    // Extra chart values, to run the tests against another configuration
    // (e.g. `cluster.autoJoin=false` shows what auto-join fixes).
    if let Ok(set) = std::env::var("RAFTKV_TEST_CHART_SET") {
        render.args(["--set", &set]);
    }
    let out = render.output().expect("python3 runs");
    assert!(
        out.status.success(),
        "rendering the chart failed (pip install helm-python-sdk kubernetes-validate): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let objects: Vec<Value> = serde_json::from_slice(&out.stdout).expect("render --json is JSON");
    let find = |kind: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == kind)
            .unwrap_or_else(|| panic!("the chart renders no {kind}"))
    };
    let sts = find("StatefulSet");
    let config_maps: BTreeMap<String, &Value> = objects
        .iter()
        .filter(|o| o["kind"] == "ConfigMap")
        .map(|o| (str_at(o, "/metadata/name"), o))
        .collect();
    let pod = &sts["spec"]["template"]["spec"];
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "one container per pod");
    let c = &containers[0];

    let port = |name: &str| -> u16 {
        c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no container port {name}")) as u16
    };
    let env = c["env"]
        .as_array()
        .map(|list| list.iter().map(env_entry).collect())
        .unwrap_or_default();
    let args = strings(&c["command"])
        .into_iter()
        .chain(strings(&c["args"]))
        .collect::<Vec<_>>();
    assert!(
        strings(&c["command"]).is_empty(),
        "the chart must use the image's entrypoint (the node as PID 1)"
    );

    let mut config_mounts = Vec::new();
    let mut data_path = None;
    let claims: Vec<String> = sts["spec"]["volumeClaimTemplates"]
        .as_array()
        .map(|v| v.iter().map(|t| str_at(t, "/metadata/name")).collect())
        .unwrap_or_default();
    for mount in c["volumeMounts"].as_array().expect("volumeMounts") {
        let name = str_at(mount, "/name");
        let path = str_at(mount, "/mountPath");
        let volume = pod["volumes"]
            .as_array()
            .and_then(|v| v.iter().find(|v| v["name"] == name.as_str()));
        if claims.contains(&name) {
            data_path = Some(path);
        } else if let Some(cm) = volume.and_then(|v| v["configMap"]["name"].as_str()) {
            let dir = config_dir.join(&name);
            std::fs::create_dir_all(&dir).unwrap();
            let data = config_maps[cm]["data"].as_object().expect("ConfigMap data");
            for (file, text) in data {
                std::fs::write(dir.join(file), text.as_str().unwrap()).unwrap();
            }
            config_mounts.push((dir, path));
        } else if let Some(secret) = volume.and_then(|v| v["secret"]["secretName"].as_str()) {
            let dir = secrets
                .get(secret)
                .unwrap_or_else(|| panic!("Secret {secret}: the test made no files for it"));
            config_mounts.push((dir.clone(), path));
        } else {
            panic!(
                "volume {name}: neither the volume claim, a ConfigMap nor a Secret; emulate it here"
            );
        }
    }
    PodTemplate {
        statefulset: str_at(sts, "/metadata/name"),
        service: str_at(sts, "/spec/serviceName"),
        image: str_at(c, "/image"),
        env,
        args,
        config_mounts,
        data_path: data_path.expect("a volume claim is mounted"),
        security: security_flags(&pod["securityContext"], &c["securityContext"]),
        grace_seconds: pod["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("terminationGracePeriodSeconds"),
        client_port: port("client"),
        http_port: port("http"),
        readiness_path: str_at(c, "/readinessProbe/httpGet/path"),
    }
}

impl PodTemplate {
    /// Pod `i`'s name.
    pub fn pod_name(&self, i: u64) -> String {
        format!("{}-{i}", self.statefulset)
    }

    /// Pod `i`'s DNS name (the headless Service's record).
    pub fn dns_name(&self, i: u64) -> String {
        format!(
            "{}.{}.{NAMESPACE}.svc.cluster.local",
            self.pod_name(i),
            self.service
        )
    }

    /// `docker run` arguments after `run`, for pod `i` as `container` with
    /// data volume `volume`, on `network` (with its DNS alias unless
    /// `dns_late`: then the caller adds it later).
    pub fn run_args(
        &self,
        i: u64,
        container: &str,
        volume: &str,
        network: &str,
        dns_late: bool,
    ) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "-d".into(),
            "--name".into(),
            container.into(),
            "--hostname".into(),
            self.pod_name(i),
            "--network".into(),
            network.into(),
        ];
        if !dns_late {
            a.extend(["--network-alias".into(), self.dns_name(i)]);
        }
        a.extend([
            "--stop-timeout".into(),
            self.grace_seconds.to_string(),
            "-v".into(),
            format!("{volume}:{}", self.data_path),
        ]);
        for (dir, path) in &self.config_mounts {
            a.extend(["-v".into(), format!("{}:{path}:ro", dir.display())]);
        }
        for (name, value) in &self.env {
            let value = match value {
                EnvValue::Literal(v) => v.clone(),
                EnvValue::PodName => self.pod_name(i),
                EnvValue::Namespace => NAMESPACE.into(),
            };
            a.extend(["-e".into(), format!("{name}={value}")]);
        }
        a.extend(self.security.iter().cloned());
        a.push(self.image.clone());
        a.extend(self.args.iter().cloned());
        a
    }
}

fn env_entry(e: &Value) -> (String, EnvValue) {
    let name = str_at(e, "/name");
    if let Some(v) = e["value"].as_str() {
        return (name, EnvValue::Literal(v.into()));
    }
    match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
        Some("metadata.name") => (name, EnvValue::PodName),
        Some("metadata.namespace") => (name, EnvValue::Namespace),
        other => panic!("env {name}: {other:?} is not emulated here"),
    }
}

/// The security context as Docker flags; a setting Docker cannot express
/// fails the test rather than being dropped silently.
pub fn security_flags(pod: &Value, container: &Value) -> Vec<String> {
    let get = |key: &str| {
        let c = &container[key];
        if c.is_null() {
            pod[key].clone()
        } else {
            c.clone()
        }
    };
    let mut flags = Vec::new();
    match (get("runAsUser").as_u64(), get("runAsGroup").as_u64()) {
        (Some(u), Some(g)) => flags.extend(["--user".into(), format!("{u}:{g}")]),
        (Some(u), None) => flags.extend(["--user".into(), u.to_string()]),
        _ => {}
    }
    if get("readOnlyRootFilesystem") == true {
        flags.push("--read-only".into());
    }
    if get("allowPrivilegeEscalation") == false {
        flags.extend(["--security-opt".into(), "no-new-privileges".into()]);
    }
    for cap in strings(&container["capabilities"]["drop"]) {
        flags.extend(["--cap-drop".into(), cap]);
    }
    for cap in strings(&container["capabilities"]["add"]) {
        flags.extend(["--cap-add".into(), cap]);
    }
    if let Some(kind) = get("seccompProfile")["type"].as_str() {
        // Docker's default profile is the runtime default.
        assert_eq!(
            kind, "RuntimeDefault",
            "seccomp profile {kind} not emulated"
        );
    }
    flags
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn str_at(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} missing in {v}"))
        .to_string()
}
