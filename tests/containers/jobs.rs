//! The chart's one-off containers (the scale-down hook's Job, the backup
//! CronJob's Job, the restore init container) run on Docker beside the
//! StatefulSet stand-in. Each is read from Helm's render (`scripts/chart.py
//! render --json` with the values a test sets), never retyped: command and
//! args as rendered, with `$(VAR)` expanded from the container's env as the
//! kubelet does; env (literal, the pod name and Secret keys); the security context as
//! Docker flags (`pod::security_flags`). The test maps each volume the
//! container mounts to a Docker volume or a host directory; an unmapped
//! one fails the test.

use super::pod::{NAMESPACE, Secrets, security_flags};
use crate::common::docker::docker;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// The chart rendered with `sets` (besides the image), every object; with
/// `upgrade_from`, as a helm upgrade that finds the StatefulSet at that
/// many replicas (the scale-down hook renders then).
pub fn render(root: &Path, image: &str, sets: &[&str], upgrade_from: Option<u64>) -> Vec<Value> {
    let (repo, tag) = image.rsplit_once(':').expect("image has a tag");
    let mut cmd = Command::new("python3");
    cmd.current_dir(root)
        .args(["scripts/chart.py", "render", "--json"])
        .args(["--set", &format!("image.repository={repo},image.tag={tag}")]);
    for set in sets {
        cmd.args(["--set", set]);
    }
    if let Some(n) = upgrade_from {
        cmd.args(["--upgrade-from", &n.to_string()]);
    }
    let out = cmd.output().expect("python3 runs");
    assert!(
        out.status.success(),
        "rendering the chart failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("render --json is JSON")
}

/// One container of a rendered pod, ready to run.
#[derive(Clone, Debug)]
pub struct OneOff {
    pub image: String,
    /// The rendered command and args, one list.
    pub argv: Vec<String>,
    /// (name, value); the downward-API pod name already filled in.
    pub env: Vec<(String, String)>,
    /// (volume name, mount path, read-only).
    pub mounts: Vec<(String, String, bool)>,
    security: Vec<String>,
}

impl OneOff {
    /// Container `container` of pod spec `pod`, as pod `pod_name` would run it.
    pub fn of(pod: &Value, container: &Value, pod_name: &str) -> OneOff {
        OneOff::with_secrets(pod, container, pod_name, &Secrets::new())
    }

    /// As [`Self::of`]; env taken from a Secret's key (`secretKeyRef`) is
    /// read from the file of that key in the Secret's directory in `secrets`.
    pub fn with_secrets(
        pod: &Value,
        container: &Value,
        pod_name: &str,
        secrets: &Secrets,
    ) -> OneOff {
        let mut env = Vec::new();
        for e in container["env"].as_array().into_iter().flatten() {
            let name = e["name"].as_str().unwrap().to_string();
            let secret_ref = &e["valueFrom"]["secretKeyRef"];
            let value = if let Some(v) = e["value"].as_str() {
                v.to_string()
            } else if let Some(secret) = secret_ref["name"].as_str() {
                let key = secret_ref["key"].as_str().unwrap();
                let dir = secrets.get(secret).unwrap_or_else(|| {
                    panic!("env {name}: Secret {secret}: the test made no files for it")
                });
                std::fs::read_to_string(dir.join(key))
                    .unwrap_or_else(|e| panic!("env {name}: Secret {secret} key {key}: {e}"))
            } else {
                match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                    Some("metadata.name") => pod_name.to_string(),
                    Some("metadata.namespace") => NAMESPACE.to_string(),
                    other => panic!("env {name}: {other:?} is not emulated here"),
                }
            };
            env.push((name, value));
        }
        let expand = |s: &str| {
            let mut s = s.to_string();
            for (k, v) in &env {
                s = s.replace(&format!("$({k})"), v);
            }
            s
        };
        let argv: Vec<String> = ["command", "args"]
            .iter()
            .flat_map(|k| container[*k].as_array().cloned().unwrap_or_default())
            .map(|v| expand(v.as_str().unwrap()))
            .collect();
        let mounts = container["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                (
                    m["name"].as_str().unwrap().to_string(),
                    m["mountPath"].as_str().unwrap().to_string(),
                    m["readOnly"] == true,
                )
            })
            .collect();
        OneOff {
            image: container["image"].as_str().unwrap().to_string(),
            argv,
            env,
            mounts,
            security: security_flags(&pod["securityContext"], &container["securityContext"]),
        }
    }

    /// Runs it to completion as `name` on `network`: `volumes` maps each
    /// mounted volume's name to a Docker volume or host path, `extra` are
    /// more `docker run` flags (what the kubelet or a Service provides).
    /// Returns (exit code, stdout and stderr).
    pub fn run(
        &self,
        name: &str,
        network: &str,
        volumes: &[(&str, String)],
        extra: &[String],
    ) -> (i64, String) {
        let mut args: Vec<String> = vec![
            "run".into(),
            "--name".into(),
            name.into(),
            "--network".into(),
            network.into(),
        ];
        for (volume, path, read_only) in &self.mounts {
            let source = volumes
                .iter()
                .find(|(n, _)| n == volume)
                .unwrap_or_else(|| panic!("volume {volume}: not mapped; emulate it in the test"))
                .1
                .clone();
            let ro = if *read_only { ":ro" } else { "" };
            args.extend(["-v".into(), format!("{source}:{path}{ro}")]);
        }
        for (k, v) in &self.env {
            args.extend(["-e".into(), format!("{k}={v}")]);
        }
        args.extend(self.security.iter().cloned());
        args.extend(extra.iter().cloned());
        let (entry, rest) = self.argv.split_first().expect("a command");
        args.extend(["--entrypoint".into(), entry.clone(), self.image.clone()]);
        args.extend(rest.iter().cloned());
        let out = Command::new("docker").args(&args).output().unwrap();
        let logs = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let code = docker(&["inspect", "-f", "{{.State.ExitCode}}", name])
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(-1);
        let _ = docker(&["rm", "-f", name]);
        (code, logs)
    }
}

/// The only container of the pod template of the first `kind` object whose
/// pod spec is at `pointer` (e.g. a Job's `/spec/template/spec`).
pub fn pod_of<'a>(objects: &'a [Value], kind: &str, pointer: &str) -> &'a Value {
    let object = objects
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("the chart renders no {kind}"));
    object
        .pointer(pointer)
        .unwrap_or_else(|| panic!("{kind} has no {pointer}"))
}
