//! A `raftctl local` cluster for process tests: started on reserved ports,
//! waited on until its ready banner, its nodes killed by the pids it
//! printed and restarted with SIGHUP, stopped with Ctrl-C.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::ctl::Ctl;
use super::ports;
use super::wait::wait_exit;

/// The nodes of a `raftctl local` cluster (its default).
pub const NODES: u16 = 3;

/// A base port with the cluster's ports (BASE + 10 * node + 0..10: the
/// node's three and its link proxies') reserved for this test process.
pub fn free_base_port() -> u16 {
    ports::free_base_port(NODES)
}

pub struct Local {
    pub child: Child,
    pub base: u16,
    /// The data directory: the nodes' logs (`node-N.log`) are there.
    pub dir: PathBuf,
    /// `raftctl local`'s stdout, up to the ready banner.
    pub banner: Vec<String>,
}

impl Local {
    /// Starts `raftctl local` and waits for its ready banner.
    pub fn start(dir: &Path, base: u16) -> Local {
        Local::launch(dir, base, None, &[])
    }

    /// [`start`](Self::start), appending raftctl's stderr to `stderr` if given.
    pub fn start_logged(dir: &Path, base: u16, stderr: Option<&Path>) -> Local {
        Local::launch(dir, base, stderr, &[])
    }

    /// [`start_logged`](Self::start_logged) with `env` for raftctl and its nodes.
    pub fn launch(dir: &Path, base: u16, stderr: Option<&Path>, env: &[(&str, &str)]) -> Local {
        Local::launch_with(dir, base, stderr, env, &[])
    }

    /// `raftctl local --tls`: TLS on every port, client certificates required.
    pub fn start_tls(dir: &Path, base: u16) -> Local {
        Local::launch_with(dir, base, None, &[], &["--tls"])
    }

    /// The `RAFTKV_CACERT`, `RAFTKV_CERT` and `RAFTKV_KEY` the banner of
    /// `raftctl local --tls` prints.
    pub fn tls_env(&self) -> Vec<(String, String)> {
        let line = self
            .banner
            .iter()
            .find_map(|l| l.trim().strip_prefix("export RAFTKV_CACERT="))
            .expect("a TLS banner");
        format!("RAFTKV_CACERT={line}")
            .split(' ')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn launch_with(
        dir: &Path,
        base: u16,
        stderr: Option<&Path>,
        env: &[(&str, &str)],
        flags: &[&str],
    ) -> Local {
        let stderr = match stderr {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap(),
            ),
            None => Stdio::null(),
        };
        let base_port = base.to_string();
        let mut child = Ctl::new()
            .command(&["local", "--data-dir", dir.to_str().unwrap()])
            .args(["--base-port", &base_port])
            .args(flags)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut banner = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            let done = line.starts_with("Ctrl-C stops");
            banner.push(line);
            if done {
                break;
            }
        }
        assert!(
            banner.iter().any(|l| l.contains("leader is node")),
            "no ready banner: {banner:?}"
        );
        // Keep draining stdout so the supervisor never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Local {
            child,
            base,
            dir: dir.to_path_buf(),
            banner,
        }
    }

    /// The pid of node `id`, from the banner.
    pub fn pid(&self, id: u64) -> u32 {
        let prefix = format!("  node {id}: pid ");
        let line = self.banner.iter().find(|l| l.starts_with(&prefix)).unwrap();
        line[prefix.len()..]
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// raftctl with this cluster's client endpoints.
    pub fn ctl(&self) -> Ctl {
        Ctl::new().endpoints(&Local::endpoints(self.base))
    }

    /// The client endpoints of the cluster on `base`, comma separated.
    pub fn endpoints(base: u16) -> String {
        (0..NODES)
            .map(|i| format!("127.0.0.1:{}", base + 10 * i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `id`'s HTTP address (/metrics, /livez, /readyz).
    pub fn http_addr(&self, id: u16) -> String {
        format!("127.0.0.1:{}", self.base + 10 * id + 2)
    }

    /// SIGHUP: `raftctl local` restarts every dead node.
    pub fn restart_dead(&self) {
        signal("-HUP", self.child.id());
    }

    /// The id of the node that reports itself leader (`raftctl status`).
    pub fn leader(&self) -> u64 {
        let rows = self.ctl().run(&["status", "-o", "json"]).json();
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["role"] == "leader")
            .and_then(|r| r["id"].as_u64())
            .expect("a leader in status")
    }

    /// Waits up to `limit` for raftctl local to exit by itself (`what`
    /// names why it should); its status.
    pub fn wait_exit(&mut self, what: &str, limit: Duration) -> std::process::ExitStatus {
        wait_exit(&mut self.child, what, limit)
    }

    /// Ctrl-C: every node stops and raftctl exits 0.
    pub fn stop(mut self) {
        signal("-INT", self.child.id());
        let status = self.wait_exit("raftctl local to stop", Duration::from_secs(15));
        assert!(status.success(), "raftctl local exited with {status}");
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failed test's temporary directory goes with it: show what the
        // nodes said, or a flaky failure leaves nothing to read.
        if std::thread::panicking() {
            print_log_tails(&self.dir, NODES_LOG_TAIL);
        }
    }
}

/// Lines of each node's log a failed test prints.
const NODES_LOG_TAIL: usize = 60;

/// Prints the last `lines` lines of every `node-N.log` in `dir`.
fn print_log_tails(dir: &Path, lines: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut logs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("node-") && n.ends_with(".log"))
        })
        .collect();
    logs.sort();
    for log in logs {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let tail = &all[all.len().saturating_sub(lines)..];
        eprintln!("--- last {} lines of {} ---", tail.len(), log.display());
        for line in tail {
            eprintln!("{line}");
        }
    }
}

pub fn signal(sig: &str, pid: u32) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success(), "kill {sig} {pid}");
}
