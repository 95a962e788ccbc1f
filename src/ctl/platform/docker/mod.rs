//! The Docker platform: containers named like StatefulSet pods
//! (`raftkv-0`, `raftkv-1`, ...), driven through the `docker` CLI (no
//! daemon socket handling of our own, and the user's docker context and
//! permissions apply as they do to `docker` itself).
//!
//! Deleting a container stops it (`docker kill`, or `docker stop -t GRACE`)
//! and starts it again with its volume: what the StatefulSet controller does
//! to a deleted pod. Scaling creates or removes containers (`scale`).

pub mod deploy;
pub mod run;
mod scale;

use std::time::Duration;
use tokio::process::Command;

use super::pod::CLIENT_PORT;
use super::{Grace, Platform, PodInfo};
use crate::ctl::exit::{CtlError, Exit};
use crate::ctl::fault::FaultKind;

/// The containers `<name>-<ordinal>`.
#[derive(Debug, Clone)]
pub struct Docker {
    pub name: String,
}

/// Runs `docker ARGS`; its stdout, or its stderr's first line as the error.
async fn docker(args: &[&str]) -> Result<String, CtlError> {
    let output = Command::new("docker")
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| {
            CtlError::new(
                Exit::Unreachable,
                format!("cannot run the docker CLI ({e}); is Docker installed and on PATH?"),
            )
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let line = stderr.lines().next().unwrap_or("").trim();
        let exit = if line.contains("Cannot connect to the Docker daemon") {
            Exit::Unreachable
        } else {
            Exit::Error
        };
        Err(CtlError::new(
            exit,
            format!("docker {}: {line}", args.join(" ")),
        ))
    }
}

/// `docker KIND inspect -f FORMAT NAME`: `None` if there is no such object.
async fn inspect(kind: &str, name: &str, format: &str) -> Result<Option<String>, CtlError> {
    match docker(&[kind, "inspect", "-f", format, name]).await {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.exit == Exit::Error && names_no_object(&e.message) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether a docker error says the object does not exist (the daemon says
/// "No such container: X" for containers and volumes, "network X not
/// found" for networks).
fn names_no_object(message: &str) -> bool {
    let m = message.to_lowercase();
    m.contains("no such") || m.contains("not found")
}

/// The ordinal of container `name` if it is `<prefix>-<digits>`.
fn ordinal(prefix: &str, name: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?.strip_prefix('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Parses `docker ps --format '{{.Names}}\t{{.State}}'` into (ordinal, name, running).
fn parse_ps(prefix: &str, text: &str) -> Vec<(u64, String, bool)> {
    let mut found: Vec<_> = text
        .lines()
        .filter_map(|line| {
            let (name, state) = line.split_once('\t')?;
            let id = ordinal(prefix, name.trim())?;
            Some((id, name.trim().to_string(), state.trim() == "running"))
        })
        .collect();
    found.sort();
    found
}

/// The host address of a container's client port: its published port on
/// the loopback, else its address on its first network.
fn endpoint_from(port_line: &str, ip: &str) -> Option<String> {
    let published = port_line
        .lines()
        .filter_map(|l| l.trim().rsplit_once(':'))
        .find_map(|(_, port)| port.parse::<u16>().ok());
    match published {
        Some(port) => Some(format!("127.0.0.1:{port}")),
        None => {
            let ip = ip.split_whitespace().next()?;
            Some(format!("{ip}:{CLIENT_PORT}"))
        }
    }
}

impl Platform for Docker {
    fn kind(&self) -> &'static str {
        "docker"
    }

    async fn pods(&self) -> Result<Vec<PodInfo>, CtlError> {
        let filter = format!("name={}-", self.name);
        let listing = docker(&[
            "ps",
            "-a",
            "--filter",
            &filter,
            "--format",
            "{{.Names}}\t{{.State}}",
        ])
        .await?;
        let mut pods = Vec::new();
        for (id, name, running) in parse_ps(&self.name, &listing) {
            let endpoint = if running {
                let port = docker(&["port", &name, &format!("{CLIENT_PORT}/tcp")])
                    .await
                    .unwrap_or_default();
                let ip = docker(&[
                    "inspect",
                    "-f",
                    "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                    &name,
                ])
                .await?;
                endpoint_from(&port, &ip)
            } else {
                None
            };
            pods.push(PodInfo {
                name,
                id,
                running,
                endpoint,
            });
        }
        if pods.is_empty() {
            return Err(CtlError::new(
                Exit::Unreachable,
                format!("no Docker container named {}-N", self.name),
            ));
        }
        Ok(pods)
    }

    async fn delete_pod(&self, name: &str, grace: Grace) -> Result<(), CtlError> {
        if ordinal(&self.name, name).is_none() {
            return Err(CtlError::new(
                Exit::BadInput,
                format!("{name:?} is not a container of {}-N", self.name),
            ));
        }
        match grace {
            Grace::Forced => docker(&["kill", name]).await?,
            // The container's own stop timeout: the pod template's
            // terminationGracePeriodSeconds when `raftctl deploy` made it.
            Grace::Graceful(None) => docker(&["stop", name]).await?,
            Grace::Graceful(Some(g)) => {
                let seconds = g.as_secs().max(1).to_string();
                docker(&["stop", "-t", &seconds, name]).await?
            }
        };
        docker(&["start", name]).await?;
        Ok(())
    }

    async fn start_pod(&self, id: u64) -> Result<(), CtlError> {
        self.start(id).await
    }

    async fn stop_pod(&self, id: u64) -> Result<(), CtlError> {
        self.stop(id).await
    }

    async fn retained_data(&self, id: u64) -> Result<Option<String>, CtlError> {
        self.retained(id).await
    }

    async fn delete_data(&self, id: u64) -> Result<(), CtlError> {
        self.delete_volumes(id).await
    }

    fn refuses(&self, fault: FaultKind) -> Option<String> {
        if fault.skews() {
            return Some(super::refuse_skew(self.kind()));
        }
        if fault.fails_disk() {
            return Some(super::refuse_disk(self.kind()));
        }
        // Pausing (which a lagging transfer uses) and scaling work here.
        fault.on_links().then(|| super::refuse_links(self.kind()))
    }

    /// `docker pause`, then `docker unpause` after `length` (or when this
    /// future is dropped first).
    async fn pause_pod(&self, id: u64, length: Duration) -> Result<(), CtlError> {
        let name = format!("{}-{id}", self.name);
        docker(&["pause", &name]).await?;
        let paused = Paused(Some(name));
        tokio::time::sleep(length).await;
        paused.resume().await
    }
}

/// A paused container; unpaused on `resume` or, as a last resort, on drop.
struct Paused(Option<String>);

impl Paused {
    async fn resume(mut self) -> Result<(), CtlError> {
        match self.0.take() {
            Some(name) => docker(&["unpause", &name]).await.map(drop),
            None => Ok(()),
        }
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        if let Some(name) = self.0.take() {
            // Blocking, but only on a way out that skipped `resume`.
            let _ = std::process::Command::new("docker")
                .args(["unpause", &name])
                .output();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ordinal_containers_count() {
        let text =
            "raftkv-1\trunning\nraftkv-0\texited\nraftkv-data\trunning\nraftkv-x-2\trunning\n";
        assert_eq!(
            parse_ps("raftkv", text),
            vec![(0, "raftkv-0".into(), false), (1, "raftkv-1".into(), true)]
        );
    }

    #[test]
    fn a_missing_object_is_told_apart_from_a_failure() {
        assert!(names_no_object("Error: No such container: kv-0"));
        assert!(names_no_object(
            "Error response from daemon: network kv-net not found"
        ));
        assert!(names_no_object(
            "Error response from daemon: get kv-data-0: no such volume"
        ));
        assert!(!names_no_object(
            "permission denied while trying to connect"
        ));
    }

    #[test]
    fn published_port_wins_over_the_network_address() {
        assert_eq!(
            endpoint_from("0.0.0.0:32768\n[::]:32768\n", "172.18.0.2 "),
            Some("127.0.0.1:32768".into())
        );
        assert_eq!(
            endpoint_from("", "172.18.0.2 "),
            Some("172.18.0.2:7379".into())
        );
        assert_eq!(endpoint_from("", ""), None);
    }
}
