//! A StatefulSet stand-in on Docker: pods `raftkv-<i>` on one network with
//! the headless Service's DNS names as aliases, one named volume each (the
//! volume claim, kept when the pod is deleted), started from the chart's
//! pod template. Every name carries a per-test prefix, so parallel tests
//! never collide; dropping the value removes the containers, volumes and
//! network even when the test failed.

use super::pod::{PodTemplate, Secrets};
use crate::common::docker::{self, docker, must};
use crate::common::wait::{Later, wait_for};
use raftkv::client::{Client, ClientOptions};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

pub struct StatefulSet {
    /// Unique prefix of every Docker object of this test.
    pub prefix: String,
    pub network: String,
    pub template: PodTemplate,
    /// Ordinals whose container exists (running or not).
    pods: Mutex<BTreeSet<u64>>,
    /// Volumes created so far (removed on drop).
    volumes: Mutex<BTreeSet<String>>,
    _config_dir: tempfile::TempDir,
}

impl StatefulSet {
    /// A network for `test`, and the pod template rendered from the chart.
    pub fn new(test: &str, image: &str) -> StatefulSet {
        StatefulSet::with_values(test, image, &[], &Secrets::new())
    }

    /// As [`Self::new`], the chart rendered with `sets`; its Secret volumes
    /// are the directories in `secrets`.
    pub fn with_values(test: &str, image: &str, sets: &[&str], secrets: &Secrets) -> StatefulSet {
        let prefix = format!(
            "rkt-{}-{}-{:04x}",
            test.replace('_', "-"),
            std::process::id(),
            rand::random::<u16>()
        );
        let config_dir = tempfile::tempdir().unwrap();
        let template = super::pod::from_chart(&root(), image, config_dir.path(), sets, secrets);
        let network = format!("{prefix}-net");
        must(&["network", "create", "--label", "raftkv-test=1", &network]);
        StatefulSet {
            prefix,
            network,
            template,
            pods: Mutex::new(BTreeSet::new()),
            volumes: Mutex::new(BTreeSet::new()),
            _config_dir: config_dir,
        }
    }

    pub fn container(&self, i: u64) -> String {
        format!("{}-{}", self.prefix, self.template.pod_name(i))
    }

    /// The named volume of pod `i` (its claim).
    pub fn volume(&self, i: u64) -> String {
        format!("{}-data-{i}", self.prefix)
    }

    /// Creates pod `i` (its volume is reused if it exists).
    pub fn start(&self, i: u64) {
        self.start_with(i, false);
    }

    /// Creates pod `i` without its DNS name; [`Self::publish_dns`] adds it.
    pub fn start_without_dns(&self, i: u64) {
        self.start_with(i, true);
    }

    /// Creates pod `i`'s volume (kept and removed like the pods' own) for
    /// a container that runs before the pod (an init container).
    pub fn claim(&self, i: u64) -> String {
        let volume = self.volume(i);
        self.volumes.lock().unwrap().insert(volume.clone());
        volume
    }

    fn start_with(&self, i: u64, dns_late: bool) {
        let volume = self.claim(i);
        let mut args = vec!["run".to_string()];
        args.extend(self.template.run_args(
            i,
            &self.container(i),
            &volume,
            &self.network,
            dns_late,
        ));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        must(&args);
        self.pods.lock().unwrap().insert(i);
    }

    /// Gives pod `i` its DNS name (reconnects it with the alias).
    pub fn publish_dns(&self, i: u64) {
        let c = self.container(i);
        must(&["network", "disconnect", &self.network, &c]);
        self.connect(i);
    }

    /// Cuts pod `i` from the network (its peers and clients lose it).
    pub fn disconnect(&self, i: u64) {
        must(&["network", "disconnect", &self.network, &self.container(i)]);
    }

    /// Reconnects pod `i` with its DNS name.
    pub fn connect(&self, i: u64) {
        let alias = self.template.dns_name(i);
        must(&[
            "network",
            "connect",
            "--alias",
            &alias,
            &self.network,
            &self.container(i),
        ]);
    }

    /// Deletes pod `i` as Kubernetes does: SIGTERM, up to the grace period,
    /// then removal; the volume stays. Returns the exit code.
    pub fn delete(&self, i: u64) -> i64 {
        let code = self.stop(i);
        self.kill(i);
        code
    }

    /// SIGTERM to pod `i`, waiting up to the grace period (then SIGKILL);
    /// the stopped container stays (its log can be read). The exit code.
    pub fn stop(&self, i: u64) -> i64 {
        let c = self.container(i);
        let grace = self.template.grace_seconds.to_string();
        must(&["stop", "-t", &grace, &c]);
        must(&["inspect", "-f", "{{.State.ExitCode}}", &c])
            .parse()
            .unwrap()
    }

    /// Kills pod `i` at once (a node crash) and removes it; the volume stays.
    pub fn kill(&self, i: u64) {
        must(&["rm", "-f", &self.container(i)]);
        self.pods.lock().unwrap().remove(&i);
    }

    /// Deletes pod `i`'s volume (the PersistentVolume is lost).
    pub fn wipe_volume(&self, i: u64) {
        must(&["volume", "rm", &self.volume(i)]);
    }

    /// Ordinals with a container.
    pub fn ordinals(&self) -> Vec<u64> {
        self.pods.lock().unwrap().iter().copied().collect()
    }

    /// `IP:client-port` of every running pod (what the test client uses:
    /// the host cannot resolve the pods' DNS names, so a redirect to one
    /// fails and the client moves on to the next address).
    pub fn endpoints(&self) -> Vec<String> {
        self.ordinals()
            .into_iter()
            .filter_map(|i| self.addr(i, self.template.client_port))
            .collect()
    }

    /// `IP:port` of pod `i`, if it is on the network.
    pub fn addr(&self, i: u64, port: u16) -> Option<String> {
        docker::ip(&self.container(i), &self.network).map(|ip| format!("{ip}:{port}"))
    }

    /// A client of the running pods (by IP). Fine for per-node calls
    /// (`status`); a request that needs the leader may be redirected to a
    /// DNS name the host cannot resolve: use [`Self::leader_client`].
    pub fn client(&self) -> Client {
        Client::lazy(self.endpoints(), options()).expect("client")
    }

    /// A client of the leader's IP only, the leader being the pod whose own
    /// status says so in the highest term; `None` while there is none.
    /// (The host cannot resolve the pods' DNS names, which is what the
    /// nodes' not-leader redirects carry; inside the network a client
    /// follows them.)
    pub async fn leader_client(&self) -> Option<Client> {
        let all = self.client();
        let mut best: Option<(u64, String)> = None;
        for ep in all.endpoints() {
            if let Ok(s) = all.status(&ep).await {
                if s.role == "leader" && best.as_ref().is_none_or(|(t, _)| s.term > *t) {
                    best = Some((s.term, ep));
                }
            }
        }
        best.map(|(_, ep)| Client::lazy(vec![ep], options()).expect("client"))
    }

    /// Whether pod `i`'s readiness probe passes now.
    pub fn ready(&self, i: u64) -> bool {
        let Some(addr) = self.addr(i, self.template.http_port) else {
            return false;
        };
        http_get(&addr, &self.template.readiness_path).is_some_and(|(code, _)| code == 200)
    }

    /// Waits until pod `i` is ready, as a rollout does.
    pub fn wait_ready(&self, i: u64, limit: Duration) {
        let what = Later(|| format!("pod {i} to be ready; its log:\n{}", self.logs(i)));
        wait_for(what, limit, || self.ready(i).then_some(()));
    }

    /// The last lines of pod `i`'s log (the node logs to stderr).
    pub fn logs(&self, i: u64) -> String {
        match std::process::Command::new("docker")
            .args(["logs", "--tail", "40", &self.container(i)])
            .output()
        {
            Ok(out) => format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => e.to_string(),
        }
    }

    /// Waits until pod `i`'s whole log contains `text`.
    pub fn wait_log(&self, i: u64, text: &str, limit: Duration) {
        let what = Later(|| format!("pod {i} to log {text:?}:\n{}", self.logs(i)));
        wait_for(what, limit, || {
            let out = std::process::Command::new("docker")
                .args(["logs", &self.container(i)])
                .output()
                .unwrap();
            (String::from_utf8_lossy(&out.stderr).contains(text)
                || String::from_utf8_lossy(&out.stdout).contains(text))
            .then_some(())
        });
    }

    /// Every pod's log tail, for a failure message.
    pub fn all_logs(&self) -> String {
        self.ordinals()
            .into_iter()
            .map(|i| format!("--- pod {i}\n{}", self.logs(i)))
            .collect()
    }
}

impl Drop for StatefulSet {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.all_logs());
        }
        // Every container of this test by its prefix, not only the pods the
        // set has now: a pod the stand-in's scale-down dropped from the set
        // may still run.
        let filter = format!("name=^{}-", self.prefix);
        let listed = docker(&["ps", "-aq", "--filter", &filter]).unwrap_or_default();
        for id in listed.lines() {
            let _ = docker(&["rm", "-f", id]);
        }
        for v in self.volumes.lock().unwrap().iter() {
            let _ = docker(&["volume", "rm", "-f", v]);
        }
        let _ = docker(&["network", "rm", &self.network]);
    }
}

/// Short deadlines: a write to a leader that is gone fails within a
/// second and the writer looks for the new one, so the write gaps the tests
/// report measure the cluster, not this client's patience.
fn options() -> ClientOptions {
    ClientOptions {
        timeout: Duration::from_secs(1),
        attempt_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(300),
        ..ClientOptions::default()
    }
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A minimal HTTP/1.0 GET: (status code, body).
fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let sock = addr.parse().ok()?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Some((code, body))
}
