//! The observability promise, proven on the real tools: raftkv's Grafana
//! dashboards are valid dashboard JSON, and a real Prometheus (Debian's
//! `prometheus` package) scraping a real `raftctl local` cluster every second
//! answers every dashboard query with data, after the test wrote, killed the
//! leader and restarted it. The uptime stat must show that unavailability:
//! strictly between 0 and 100 %. The nodes' /metrics pass `promtool check
//! metrics`, and the alert rules load and evaluate without error.
//!
//! The metrics that stand in for etcd's (docs/observability.md) are checked
//! on the nodes themselves: a round-trip histogram on the leader for each
//! peer, the WAL and snapshot bytes against the files in the data
//! directories, and the gRPC answers counted by their status code. A stand-in
//! kubelet serves volume stats for the pods' claims, so the volume panels and
//! rules run on data too; every metric a panel reads is one a node exports,
//! the kubelet's, kube-state-metrics' or Prometheus's own `up`.
//!
//! The query results are written to `$CARGO_TARGET_TMPDIR/observability/`;
//! `scripts/observability/plot_panels.py` renders them as the PNGs in
//! docs/observability/.

mod observability {
    pub mod grafana;
    pub mod http;
    pub mod prom;
}
mod common;

use common::local::{self, Local};
use observability::grafana::{self, Kind};
use observability::prom::{self, Prometheus, Target};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NAMESPACE: &str = "default";
const CLUSTER: &str = "obs-test";
/// The resolution of the test's graphs: Grafana's $__interval with a data
/// source whose scrape interval is 1 s, as the test's Prometheus has.
const STEP: u64 = 1;

#[test]
fn dashboards_are_valid_grafana_json() {
    let dashboards = grafana::load();
    let names: Vec<_> = dashboards.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "raftkv-cluster.json",
            "raftkv-node.json",
            "raftkv-uptime.json"
        ]
    );
    let mut uids = std::collections::HashSet::new();
    let mut bad = Vec::new();
    for (name, d) in &dashboards {
        bad.extend(grafana::problems(name, d));
        assert!(uids.insert(d["uid"].clone()), "{name}: duplicate uid");
        assert!(!grafana::queries(d).is_empty(), "{name}: no queries");
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn the_validator_rejects_what_grafana_would_not_import() {
    let (name, mut d) = grafana::load().remove(0);
    d["panels"][1]["id"] = d["panels"][0]["id"].clone();
    d["panels"][0]["targets"][0]["expr"] = json!("up");
    d["templating"]["list"][0]["type"] = json!("query");
    let bad = grafana::problems(&name, &d).join("\n");
    for want in [
        "duplicate id",
        "not keyed by $namespace",
        "no `datasource` variable",
    ] {
        assert!(bad.contains(want), "missing `{want}` in:\n{bad}");
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

#[test]
fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    let (Some(prometheus), Some(promtool)) = (which("prometheus"), which("promtool")) else {
        println!(
            "SKIPPED: no prometheus/promtool on PATH (apt-get install prometheus; scripts/test does)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cluster = Local::launch(
        &dir.path().join("cluster"),
        local::free_base_port(),
        None,
        // Small snapshots so the snapshot panels have data.
        &[("RAFTKV_SNAPSHOT_THRESHOLD", "200")],
    );
    let targets: Vec<Target> = (0..local::NODES)
        .map(|i| Target {
            addr: cluster.http_addr(i),
            pod: format!("raftkv-{i}"),
        })
        .collect();
    let rules =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/raftkv/rules/raftkv-alerts.yaml");
    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let start = prom::unix_now().floor();
    let started = Instant::now();
    // Scraped as the chart's ServiceMonitor has the Prometheus Operator
    // scrape: release CLUSTER in NAMESPACE, its objects named raftkv.
    let kubelet = prom::FakeKubelet::start(NAMESPACE, &targets);
    let scrape_configs = prom::chart_scrape_configs(CLUSTER, &targets) + &kubelet.scrape_config();
    let prom = Prometheus::start(
        &prometheus,
        &prom_dir,
        common::ports::free_port(),
        &scrape_configs,
        &rules,
    );
    check_targets(&prom, &targets);
    let all_up = r#"count(up{job="raftkv"} == 1)"#;
    prom.wait_for(all_up, Duration::from_secs(30), |n| n == 3.0);

    for t in &targets {
        check_metrics(&promtool, &t.addr);
    }
    check_grpc_codes(&cluster);

    // Load, and the leader killed in the middle of it.
    let load = bench(&cluster, "6s");
    std::thread::sleep(Duration::from_secs(2));
    let old = cluster.leader();
    local::signal("-KILL", cluster.pid(old));
    println!("killed the leader, node {old}");
    assert!(load.join().unwrap(), "bench across the failover failed");
    prom.wait_for(all_up, Duration::from_secs(10), |n| n == 2.0);
    std::thread::sleep(Duration::from_secs(2));
    cluster.restart_dead();
    prom.wait_for(all_up, Duration::from_secs(60), |n| n == 3.0);
    wait_all_ready(&targets, Duration::from_secs(60));
    prom.wait_for(
        r#"count(raftkv_ready{job="raftkv"} == 1)"#,
        Duration::from_secs(60),
        |n| n == 3.0,
    );
    assert!(bench(&cluster, "3s").join().unwrap());
    // Rate windows need a few scrapes after the load; the 30-day stat's
    // 1-minute denominator needs one whole minute of the cluster's life.
    std::thread::sleep(Duration::from_secs(5));
    if let Some(rest) = Duration::from_secs(75).checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    let end = prom::unix_now().floor();

    check_round_trips_and_bytes(&cluster, &dir.path().join("cluster"));
    let results = run_every_query(&prom, start, end);
    check_rules(&prom);
    check_panel_metrics(&cluster);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("observability");
    std::fs::create_dir_all(&out).unwrap();
    let file = out.join("panels.json");
    std::fs::write(&file, serde_json::to_string_pretty(&results).unwrap()).unwrap();
    println!("query results: {}", file.display());
}

/// Prometheus scrapes each node once, with the labels the dashboards and
/// alert rules key by (docs/kubernetes.md lists them): a monitor that also
/// selected the client Service scraped every pod twice, and the uptime
/// stat, `count(up)` and the per-pod alerts counted each member twice.
fn check_targets(prom: &Prometheus, targets: &[Target]) {
    // Prometheus hands discovered targets to the scrapers every 5 s, and
    // the fake kubelet's may be active before the nodes': wait for a node.
    let active = common::wait::wait_for("prometheus's targets", Duration::from_secs(30), || {
        let data = prom.api("/api/v1/targets?state=active");
        let nodes: Vec<serde_json::Value> = data["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t["labels"]["job"] != prom::FakeKubelet::JOB)
            .collect();
        (!nodes.is_empty()).then_some(nodes)
    });
    let mut got: Vec<BTreeMap<String, String>> = active
        .iter()
        .map(|t| serde_json::from_value(t["labels"].clone()).unwrap())
        .collect();
    got.sort();
    let mut want: Vec<BTreeMap<String, String>> = targets
        .iter()
        .map(|t| {
            [
                ("job", "raftkv"),
                ("namespace", NAMESPACE),
                ("service", "raftkv-headless"),
                ("pod", &t.pod),
                ("container", "raftkv"),
                ("endpoint", "http"),
                ("cluster", CLUSTER),
                ("instance", &t.addr),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
        })
        .collect();
    want.sort();
    assert_eq!(
        got, want,
        "the chart's ServiceMonitor must scrape each pod once, with these labels"
    );
}

/// Waits until every node's /readyz answers 200, failing with what each
/// one last answered: the gauge Prometheus sees says only "not ready".
fn wait_all_ready(targets: &[Target], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let answers: Vec<String> = targets
            .iter()
            .map(|t| match observability::http::get(&t.addr, "/readyz") {
                Ok((status, body)) => format!("{}: {status} {}", t.pod, body.trim()),
                Err(e) => format!("{}: {e}", t.pod),
            })
            .collect();
        if answers.iter().all(|a| a.contains(": 200")) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nodes not ready within {limit:?}: {answers:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `raftctl bench mixed` for `duration` on a thread; whether it succeeded.
fn bench(cluster: &Local, duration: &str) -> std::thread::JoinHandle<bool> {
    let mut command = cluster.ctl().command(&[
        "bench",
        "mixed",
        "--clients",
        "4",
        "--key-space",
        "300",
        "--duration",
        duration,
    ]);
    command.stdout(Stdio::null()).stderr(Stdio::null());
    std::thread::spawn(move || command.status().unwrap().success())
}

/// The node's /metrics must pass promtool's linter.
fn check_metrics(promtool: &Path, addr: &str) {
    let (status, body) = observability::http::get(addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics on {addr}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every alert rule loaded and evaluated without an error on real data.
fn check_rules(prom: &Prometheus) {
    let data = prom.api("/api/v1/rules");
    let rules: Vec<&Value> = data["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    let file = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/charts/raftkv/rules/raftkv-alerts.yaml"
    ))
    .unwrap();
    let written = file
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count();
    assert!(written > 0, "no alert rules found in the rules file");
    assert_eq!(rules.len(), written, "{data}");
    for r in rules {
        assert_eq!(r["health"], "ok", "rule {}: {}", r["name"], r["lastError"]);
    }
}

/// Grafana's values for the variables over [start, end].
fn variables(start: f64, end: f64) -> BTreeMap<&'static str, String> {
    let range = (end - start) as u64;
    let pods: Vec<_> = (0..local::NODES).map(|i| format!("raftkv-{i}")).collect();
    BTreeMap::from([
        ("namespace", NAMESPACE.to_string()),
        ("cluster", CLUSTER.to_string()),
        ("pod", pods.join("|")),
        ("slo", "99.9".to_string()),
        ("__range", format!("{range}s")),
        ("__range_s", range.to_string()),
        ("__interval", format!("{STEP}s")),
        ("__interval_ms", (STEP * 1000).to_string()),
        // Grafana: max(4 × scrape interval, $__interval + scrape interval).
        ("__rate_interval", "4s".to_string()),
    ])
}

/// Runs every query of every dashboard as its panel would, asserts each
/// returns a finite value, checks the uptime stat, and returns the results.
fn run_every_query(prom: &Prometheus, start: f64, end: f64) -> Value {
    let vars = variables(start, end);
    let mut empty = Vec::new();
    let mut dashboards = Vec::new();
    let mut uptime = None;
    let mut unavailable = None;
    for (name, d) in grafana::load() {
        for (var, selector, label) in grafana::variable_queries(&d) {
            let selector = grafana::substitute(&selector, &vars);
            let values = prom.api(&format!(
                "/api/v1/label/{label}/values?match[]={}&start={start}&end={end}",
                observability::http::encode(&selector)
            ));
            let want = vars[var.as_str()].split('|').next().unwrap().to_string();
            let have: Vec<_> = values.as_array().unwrap().iter().collect();
            assert!(
                have.iter().any(|v| **v == want),
                "{name}: variable {var} ({selector}, {label}) gave {have:?}, not {want}"
            );
        }
        let mut queries = Vec::new();
        for q in grafana::queries(&d) {
            let expr = grafana::substitute(&q.expr, &vars);
            let data = match q.kind {
                Kind::Range => prom.query_range(&expr, start, end, STEP),
                Kind::Instant => prom.query(&expr, end),
            };
            if !prom::has_finite_value(&data) {
                empty.push(format!("{name} / {}: {expr}", q.panel));
            }
            let first = data["result"][0]["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok());
            match q.panel.as_str() {
                "Writes possible (range)" => uptime = first,
                "Unavailable (range)" => unavailable = first,
                // The stand-in kubelet's claims are a quarter used: the
                // join to the pods must keep that ratio.
                "Volume free" => volume_free_is_three_quarters(&data),
                _ => {}
            }
            queries.push(json!({
                "panel": q.panel, "type": q.panel_type, "legend": q.legend,
                "expr": expr, "kind": format!("{:?}", q.kind), "data": data,
            }));
        }
        println!("{name}: {} queries answered", queries.len());
        dashboards.push(json!({"file": name, "queries": queries}));
    }
    assert!(
        empty.is_empty(),
        "queries without data:\n{}",
        empty.join("\n")
    );
    let uptime: f64 = uptime.expect("the uptime stat has a value");
    let unavailable: f64 = unavailable.expect("the unavailable stat has a value");
    println!(
        "uptime over {:.0} s: {:.3} %, unavailable {unavailable:.2} s",
        end - start,
        uptime * 100.0
    );
    assert!(
        uptime > 0.0 && uptime < 1.0,
        "the leader's SIGKILL must show as unavailability: uptime {uptime}"
    );
    assert!(unavailable > 0.0, "unavailable {unavailable}");
    json!({"start": start, "end": end, "step": STEP, "dashboards": dashboards})
}

/// Every point of every pod's "Volume free" series is the stand-in
/// kubelet's 3/4.
fn volume_free_is_three_quarters(data: &Value) {
    let series = data["result"].as_array().unwrap();
    assert_eq!(series.len(), usize::from(local::NODES), "{data}");
    for s in series {
        for point in s["values"].as_array().unwrap() {
            let v: f64 = point[1].as_str().unwrap().parse().unwrap();
            assert_eq!(v, 0.75, "{}", s["metric"]);
        }
    }
}

/// The value of the series `name{labels}` (labels as written by the
/// exposition format, sorted) in a node's /metrics text; 0 if absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

fn metrics_of(addr: &str) -> String {
    let (status, body) = observability::http::get(addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    body
}

/// Node `i`'s client address (the HTTP port is the client port + 2).
fn client_addr(cluster: &Local, i: u16) -> String {
    let http = cluster.http_addr(i);
    let (host, port) = http.rsplit_once(':').unwrap();
    format!("{host}:{}", port.parse::<u16>().unwrap() - 2)
}

/// `raftkv_grpc_requests_total` counts each answer under its method and
/// gRPC code: a read on a follower is refused with UNAVAILABLE (not the
/// leader), one on the leader is OK, and a method the port does not have
/// is UNIMPLEMENTED under `method="unknown"` (no label from the client).
fn check_grpc_codes(cluster: &Local) {
    let leader = cluster.leader() as u16;
    let follower = (0..local::NODES).find(|i| *i != leader).unwrap();
    let series = |method: &str, code: &str| {
        format!(
            "raftkv_grpc_requests_total{{code=\"{code}\",method=\"{method}\",service=\"raftkv.v1.Kv\"}}"
        )
    };
    let cases = [
        (follower, "Get", "UNAVAILABLE"),
        (leader, "Get", "OK"),
        (follower, "unknown", "UNIMPLEMENTED"),
    ];
    let before: Vec<f64> = cases
        .iter()
        .map(|(node, method, code)| {
            sample(
                &metrics_of(&cluster.http_addr(*node)),
                &series(method, code),
            )
        })
        .collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        use raftkv::pb::{GetRequest, GetResponse, kv_client::KvClient};
        let get = || GetRequest {
            key: bytes::Bytes::from_static(b"obs-probe"),
        };
        let url = |i| format!("http://{}", client_addr(cluster, i));
        let mut on_follower = KvClient::connect(url(follower)).await.unwrap();
        let refused = on_follower.get(get()).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
        let mut on_leader = KvClient::connect(url(leader)).await.unwrap();
        on_leader.get(get()).await.unwrap();
        let channel = tonic::transport::Endpoint::from_shared(url(follower))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        let path =
            tonic::codegen::http::uri::PathAndQuery::from_static("/raftkv.v1.Kv/NoSuchMethod");
        let codec = tonic_prost::ProstCodec::<GetRequest, GetResponse>::default();
        let unknown = grpc
            .unary(tonic::Request::new(get()), path, codec)
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::Unimplemented, "{unknown:?}");
    });
    for ((node, method, code), was) in cases.iter().zip(before) {
        let now = sample(
            &metrics_of(&cluster.http_addr(*node)),
            &series(method, code),
        );
        assert_eq!(now, was + 1.0, "node {node}: {method} answered {code}");
    }
}

/// On the leader, a round trip was observed for every peer; on every node
/// the WAL and snapshot bytes are those of the files in its data directory.
fn check_round_trips_and_bytes(cluster: &Local, dir: &Path) {
    let leader = cluster.leader() as u16;
    let text = metrics_of(&cluster.http_addr(leader));
    for peer in (0..local::NODES).filter(|p| *p != leader) {
        let count = sample(
            &text,
            &format!("raftkv_peer_round_trip_seconds_count{{peer=\"{peer}\"}}"),
        );
        let sum = sample(
            &text,
            &format!("raftkv_peer_round_trip_seconds_sum{{peer=\"{peer}\"}}"),
        );
        assert!(
            count > 10.0,
            "leader {leader}: {count} round trips to {peer}"
        );
        // On one machine a heartbeat's round trip is well under a second.
        let mean = sum / count;
        assert!(
            mean > 0.0 && mean < 0.5,
            "leader {leader} -> {peer}: mean {mean} s"
        );
    }
    for i in 0..local::NODES {
        let data = data_dir(dir, i);
        let on_disk = |sub: &str| -> f64 {
            std::fs::read_dir(data.join(sub))
                .unwrap()
                .map(|e| e.unwrap())
                .filter(|e| !e.file_name().to_string_lossy().ends_with(".tmp"))
                .map(|e| e.metadata().unwrap().len() as f64)
                .sum()
        };
        // The snapshot file is what the node counted; so are the WAL's
        // segments, but for records written after the last sync (a hard
        // state whose new commit index need not be durable yet), which the
        // count includes before they reach the file. A state check may
        // append meanwhile: look again.
        let what = format!("node {i}: WAL and snapshot bytes as in the files");
        common::wait::wait_for(what, Duration::from_secs(10), || {
            let text = metrics_of(&cluster.http_addr(i));
            let wal = sample(&text, "raftkv_wal_bytes");
            let snapshot = sample(&text, "raftkv_snapshot_bytes");
            assert!(wal > 0.0, "node {i}: raftkv_wal_bytes {wal}");
            assert!(snapshot > 0.0, "node {i}: raftkv_snapshot_bytes {snapshot}");
            let (files, snap_file) = (on_disk("wal"), on_disk("snap"));
            let buffered = wal - files;
            let ok = snapshot == snap_file && (0.0..4096.0).contains(&buffered);
            if !ok {
                println!("node {i}: counted {wal} / {snapshot} bytes, files {files} / {snap_file}");
            }
            ok.then_some(())
        });
    }
}

/// Node `i`'s data directory under `raftctl local`'s directory.
fn data_dir(dir: &Path, i: u16) -> PathBuf {
    dir.join(format!("node-{i}"))
}

/// Every metric a dashboard query selects is one a node exports (the
/// union of the three nodes' /metrics), or one of the few from elsewhere
/// that the panels name on purpose.
fn check_panel_metrics(cluster: &Local) {
    let mut exported = std::collections::BTreeSet::new();
    for i in 0..local::NODES {
        for line in metrics_of(&cluster.http_addr(i)).lines() {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let name = line.split(['{', ' ']).next().unwrap();
            exported.insert(name.to_string());
        }
    }
    let elsewhere = [
        "up",
        "kubelet_volume_stats_available_bytes",
        "kubelet_volume_stats_capacity_bytes",
        "kubelet_volume_stats_used_bytes",
        "kube_pod_container_status_restarts_total",
    ];
    let mut unknown = Vec::new();
    for (name, d) in grafana::load() {
        for q in grafana::queries(&d) {
            for metric in grafana::selected_metrics(&q.expr) {
                if !exported.contains(&metric) && !elsewhere.contains(&metric.as_str()) {
                    unknown.push(format!("{name} / {}: {metric}", q.panel));
                }
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "metrics no node exports:\n{}",
        unknown.join("\n")
    );
}
