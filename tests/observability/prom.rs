//! A real Prometheus (Debian's `prometheus` binary) scraping the test's
//! nodes every second, with raftkv's alert rules loaded, and its HTTP API.

use super::http::{encode, get};
use crate::common::wait::wait_for;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Prometheus {
    child: Child,
    pub addr: String,
}

/// One scrape target: the node's HTTP address and the pod name it stands for.
pub struct Target {
    pub addr: String,
    pub pod: String,
}

/// The scrape configs Prometheus runs for the chart's ServiceMonitor in
/// release `release` (objects named `raftkv`, so the pods are `raftkv-N`),
/// scraping every second: what the Prometheus Operator generates from the
/// rendered monitor, each pod at its target's address
/// (`scripts/chart.py scrape-config`). Panics if the chart cannot render.
pub fn chart_scrape_configs(release: &str, targets: &[Target]) -> String {
    let mut command = Command::new("python3");
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["scripts/chart.py", "scrape-config", "--release", release])
        .args(["--set", "fullnameOverride=raftkv"])
        .args(["--set", "monitoring.serviceMonitor.enabled=true"])
        .args(["--set", "monitoring.serviceMonitor.interval=1s"]);
    for t in targets {
        command.arg("--pod").arg(format!("{}={}", t.pod, t.addr));
    }
    let out = command.output().expect("python3 runs");
    assert!(
        out.status.success(),
        "scripts/chart.py scrape-config failed (needs `pip install helm-python-sdk kubernetes-validate`; \
         scripts/test installs them):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

impl Prometheus {
    /// Starts Prometheus in `dir` on `port` with `scrape_configs` (a YAML
    /// document whose key is `scrape_configs`) and the rules file `rules`.
    pub fn start(
        binary: &Path,
        dir: &Path,
        port: u16,
        scrape_configs: &str,
        rules: &Path,
    ) -> Prometheus {
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n{scrape_configs}",
            rules.display()
        );
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, config).unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let prom = Prometheus { child, addr };
        wait_for("prometheus to get ready", Duration::from_secs(60), || {
            matches!(get(&prom.addr, "/-/ready"), Ok((200, _))).then_some(())
        });
        prom
    }

    /// GETs an API path; the `data` field of a successful answer.
    pub fn api(&self, path_and_query: &str) -> Value {
        let (status, body) = get(&self.addr, path_and_query).unwrap();
        let v: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path_and_query}: {e}: {body}"));
        assert_eq!(status, 200, "{path_and_query}: {body}");
        assert_eq!(v["status"], "success", "{path_and_query}: {body}");
        v["data"].clone()
    }

    /// An instant query at `time` (unix seconds).
    pub fn query(&self, expr: &str, time: f64) -> Value {
        self.api(&format!(
            "/api/v1/query?query={}&time={time:.3}",
            encode(expr)
        ))
    }

    /// A range query over [start, end] with `step` seconds.
    pub fn query_range(&self, expr: &str, start: f64, end: f64, step: u64) -> Value {
        self.api(&format!(
            "/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step={step}",
            encode(expr)
        ))
    }

    /// The value of a scalar-like instant query (first element), if any.
    pub fn value(&self, expr: &str) -> Option<f64> {
        let now = unix_now();
        let data = self.query(expr, now);
        let first = data["result"].as_array()?.first()?.clone();
        first["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `expr` has a value for which `ok` holds.
    pub fn wait_for(&self, expr: &str, limit: Duration, ok: impl Fn(f64) -> bool) {
        let what = format!("prometheus: `{expr}` as expected");
        wait_for(what, limit, || {
            self.value(expr).is_some_and(&ok).then_some(())
        });
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Whether a query result (vector or matrix) holds at least one finite value.
pub fn has_finite_value(data: &Value) -> bool {
    let finite = |pair: &Value| {
        pair[1]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .is_some_and(f64::is_finite)
    };
    data["result"].as_array().is_some_and(|series| {
        series.iter().any(|s| {
            s.get("value").is_some_and(finite)
                || s["values"]
                    .as_array()
                    .is_some_and(|vs| vs.iter().any(finite))
        })
    })
}

/// A stand-in for the kubelet's volume stats: a thread serving
/// `kubelet_volume_stats_{capacity,available,used}_bytes` for each pod's
/// claim `data-<pod>` (1 Gi, a quarter used), scraped as job `kubelet`.
pub struct FakeKubelet {
    pub addr: String,
}

impl FakeKubelet {
    pub const JOB: &str = "kubelet";

    pub fn start(namespace: &str, targets: &[Target]) -> FakeKubelet {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut body = String::new();
        for (metric, value) in [
            ("capacity", 1u64 << 30),
            ("available", 3 << 28),
            ("used", 1 << 28),
        ] {
            body += &format!("# TYPE kubelet_volume_stats_{metric}_bytes gauge\n");
            for t in targets {
                body += &format!(
                    "kubelet_volume_stats_{metric}_bytes{{namespace=\"{namespace}\",persistentvolumeclaim=\"data-{}\"}} {value}\n",
                    t.pod
                );
            }
        }
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = write!(
                    s,
                    "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        FakeKubelet { addr }
    }

    /// Its scrape config, as a `scrape_configs` list item.
    pub fn scrape_config(&self) -> String {
        format!(
            "- job_name: {}\n  static_configs:\n  - targets: ['{}']\n",
            Self::JOB,
            self.addr
        )
    }
}
