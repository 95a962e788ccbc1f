//! A `raftctl local` cluster in a temporary directory on free ports, the way
//! a user runs it: the test kills nodes by the pids it printed and restarts
//! them with SIGHUP.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub const RAFTCTL: &str = env!("CARGO_BIN_EXE_raftctl");
pub const NODES: u16 = 3;

pub struct Local {
    child: Child,
    pub base: u16,
    banner: Vec<String>,
}

impl Local {
    /// Starts `raftctl local` in `dir` with `env` for the nodes, and waits
    /// for its ready banner (a leader holds its lease).
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> Local {
        let base = free_base_port();
        let mut child = Command::new(RAFTCTL)
            .args(["local", "--data-dir", dir.to_str().unwrap()])
            .args(["--base-port", &base.to_string()])
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let banner: Vec<String> = lines
            .by_ref()
            .map(Result::unwrap)
            .take_while(|l| !l.starts_with("Ctrl-C stops"))
            .collect();
        assert!(
            banner.iter().any(|l| l.contains("leader is node")),
            "no ready banner: {banner:?}"
        );
        std::thread::spawn(move || lines.for_each(drop));
        Local {
            child,
            base,
            banner,
        }
    }

    pub fn http_addr(&self, id: u16) -> String {
        format!("127.0.0.1:{}", self.base + 10 * id + 2)
    }

    pub fn endpoints(&self) -> String {
        (0..NODES)
            .map(|i| format!("127.0.0.1:{}", self.base + 10 * i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The pid `raftctl local` printed for node `id` when it started.
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

    /// SIGHUP: `raftctl local` restarts every dead node.
    pub fn restart_dead(&self) {
        signal("-HUP", self.child.id());
    }

    /// Runs raftctl with this cluster's endpoints; its stdout (must succeed).
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = Command::new(RAFTCTL)
            .args(args)
            .env("RAFTKV_ENDPOINTS", self.endpoints())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "raftctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The id of the node that reports itself leader.
    pub fn leader(&self) -> u64 {
        let rows: serde_json::Value =
            serde_json::from_str(&self.ctl(&["status", "-o", "json"])).unwrap();
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["role"] == "leader")
            .and_then(|r| r["id"].as_u64())
            .expect("a leader in status")
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        // SIGINT stops the nodes in order; kill if it hangs.
        signal("-INT", self.child.id());
        for _ in 0..300 {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal(sig: &str, pid: u32) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success(), "kill {sig} {pid}");
}

/// A port nobody listens on now (for Prometheus).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A base port below 60000 with the cluster's nine ports free.
fn free_base_port() -> u16 {
    loop {
        let base = free_port();
        let ports = (0..NODES).flat_map(|i| (0..3).map(move |k| base + 10 * i + k));
        if base < 60_000
            && ports
                .clone()
                .all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        {
            return base;
        }
    }
}
