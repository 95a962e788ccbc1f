//! A `raftctl local` cluster for process tests: started on reserved ports,
//! waited on until its ready banner, stopped with Ctrl-C.
//! Included by path (`#[path = "common/local.rs"] mod local;`).

#![allow(dead_code)]

#[path = "ports.rs"]
mod ports;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const RAFTCTL: &str = env!("CARGO_BIN_EXE_raftctl");

/// A base port with the ports of three nodes (BASE + 10 * node + 0..3)
/// reserved for this test process.
pub fn free_base_port() -> u16 {
    ports::free_base_port(3)
}

pub struct Local {
    pub child: Child,
    /// `raftctl local`'s stdout, up to the ready banner.
    pub banner: Vec<String>,
}

impl Local {
    /// Starts `raftctl local` and waits for its ready banner.
    pub fn start(dir: &std::path::Path, base: u16) -> Local {
        Local::start_logged(dir, base, None)
    }

    /// [`start`](Self::start), appending raftctl's stderr to `stderr` if given.
    pub fn start_logged(
        dir: &std::path::Path,
        base: u16,
        stderr: Option<&std::path::Path>,
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
        let mut child = Command::new(RAFTCTL)
            .args(["local", "--data-dir", dir.to_str().unwrap()])
            .args(["--base-port", &base.to_string()])
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
        Local { child, banner }
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

    /// The client endpoints of the cluster, comma separated.
    pub fn endpoints(base: u16) -> String {
        (0..3)
            .map(|i| format!("127.0.0.1:{}", base + 10 * i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits up to `limit` for raftctl local to exit by itself; its status.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Ctrl-C: every node stops and raftctl exits 0.
    pub fn stop(mut self) {
        signal("-INT", self.child.id());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "raftctl local exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "raftctl local did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Local {
    fn drop(&mut self) {
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
