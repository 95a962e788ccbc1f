//! `raftctl bench` against a `raftctl local` cluster: the servers' CPU per
//! request from both sources (the supervisor's pids, the nodes' /metrics),
//! the open loop's schedule and its latencies counted from the planned
//! starts (a stalled leader must show in the percentiles), and sweeps.

mod common;

use std::time::{Duration, Instant};

use common::cluster::http_get;
use common::local::{Local, free_base_port, signal};
use common::wait::wait_for;
use serde_json::Value;

/// User + system seconds of `pid` so far, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &text[text.rfind(')').unwrap() + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / ticks
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn bench_reports_server_cpu_open_loop_latency_and_sweeps() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_dir = data.to_str().unwrap();
    let local = Local::start(&data, free_base_port());
    let ctl = local.ctl();
    let pids: Vec<u32> = (0..3).map(|id| local.pid(id)).collect();

    // CPU from the supervisor's pids: user and system per node, and a
    // total that the nodes' own counters, read around the whole command
    // (connecting included), bound from above.
    let before: f64 = pids.iter().map(|&p| cpu_seconds(p)).sum();
    let out = ctl
        .run(&[
            "bench",
            "set",
            "--clients",
            "4",
            "--duration",
            "2s",
            "--data-dir",
            data_dir,
            "-o",
            "json",
        ])
        .ok();
    let outside = pids.iter().map(|&p| cpu_seconds(p)).sum::<f64>() - before;
    let r = out.json();
    let requests = num(&r["requests"]);
    assert!(requests > 50.0, "{out}");
    let cpu = &r["cpu"];
    assert!(cpu["source"].as_str().unwrap().contains("/proc"), "{out}");
    let members = cpu["members"].as_array().unwrap();
    let names: Vec<&str> = members
        .iter()
        .map(|m| m["member"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["node 0", "node 1", "node 2"], "{out}");
    let mut sum = 0.0;
    for m in members {
        let p = &m["per_op"];
        let (user, system, total) = (
            num(&p["user_us"]),
            num(&p["system_us"]),
            num(&p["total_us"]),
        );
        assert!(user >= 0.0 && system >= 0.0, "{out}");
        assert!((user + system - total).abs() < 1e-6, "{out}");
        sum += total;
    }
    let all = num(&cpu["total"]["total_us"]);
    assert!((all - sum).abs() < 1e-6, "{out}");
    // Every write costs the leader and a follower something.
    assert!(all > 1.0, "{out}");
    let inside = all * requests / 1e6;
    // One clock tick (10 ms) of rounding per node and sample.
    assert!(
        inside <= outside + 0.06,
        "window {inside} s > whole run {outside} s: {out}"
    );

    // Without the supervisor: the nodes' /metrics, where raftkv serves its
    // CPU time by mode in microsecond steps.
    let elsewhere = dir.path().join("none");
    let get_without_pids = [
        "bench",
        "get",
        "--clients",
        "2",
        "--duration",
        "1s",
        "--data-dir",
        elsewhere.to_str().unwrap(),
    ];
    let out = ctl.run(&get_without_pids).ok();
    assert!(
        out.stdout
            .contains("raftkv_process_cpu_seconds_total by mode"),
        "{out}"
    );
    assert!(out.stdout.contains(&local.http_addr(0)), "{out}");
    let out = ctl
        .run(&[&get_without_pids[..], &["-o", "json"]].concat())
        .ok();
    let r = out.json();
    let total = &r["cpu"]["total"];
    let (user, system) = (num(&total["user_us"]), num(&total["system_us"]));
    assert!(user > 0.0 && system >= 0.0, "{out}");
    assert!(
        (num(&total["total_us"]) - (user + system)).abs() < 1e-6,
        "{out}"
    );
    // One microsecond step per member and sample, over the requests.
    let resolution = 3.0 / num(&r["requests"]);
    assert!(
        (num(&total["resolution_us"]) - resolution).abs() < 1e-6 * resolution,
        "{out}"
    );
    // A member whose /metrics does not answer is named, not guessed.
    let out = ctl
        .run(&[
            "bench",
            "get",
            "--clients",
            "1",
            "--duration",
            "300ms",
            "--data-dir",
            elsewhere.to_str().unwrap(),
            "--metrics",
            &format!("{},127.0.0.1:1", local.http_addr(0)),
        ])
        .ok();
    assert!(
        out.stdout
            .contains("unavailable: http://127.0.0.1:1/metrics"),
        "{out}"
    );

    // Open loop: 200 requests/s from 16 clients over 3 s, the leader
    // stopped for 400 ms a second in. The requests planned during the
    // stall are sent late, and their latency counts from when they were
    // planned: a closed loop would show one slow request per client and a
    // clean p99.
    let leader = local.leader();
    let commit_index = || {
        let (_, text) = http_get(&local.http_addr(leader as u16), "/metrics").ok()?;
        let line = text
            .lines()
            .find(|l| l.starts_with("raftkv_commit_index "))?;
        line.split_whitespace().nth(1)?.parse::<f64>().ok()
    };
    let before = wait_for(
        "the leader's commit index",
        Duration::from_secs(10),
        commit_index,
    );
    let bench = {
        let mut command = ctl.command(&[
            "bench",
            "set",
            "--clients",
            "16",
            "--rate",
            "200",
            "--duration",
            "3s",
            "--data-dir",
            data_dir,
            "-o",
            "json",
        ]);
        std::thread::spawn(move || command.output().unwrap())
    };
    // Stall only once the bench is writing (it may take a while to start
    // on a loaded machine), so the stall falls inside its run.
    wait_for("the bench's first writes", Duration::from_secs(30), || {
        commit_index().filter(|&i| i >= before + 20.0)
    });
    let stalled = Instant::now();
    signal("-STOP", local.pid(leader));
    std::thread::sleep(Duration::from_millis(400));
    signal("-CONT", local.pid(leader));
    let stall = stalled.elapsed();
    let out = bench.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(num(&r["open_loop"]["offered_rate"]), 200.0, "{text}");
    let sent = num(&r["requests"]) + num(&r["errors"]);
    let planned = sent + num(&r["open_loop"]["unsent"]);
    assert!(
        (570.0..=630.0).contains(&planned),
        "{planned} planned: {text}"
    );
    // Sixteen clients have room for 200/s even on a loaded machine: nearly
    // all that was planned was sent, late or not.
    assert!(sent >= 0.8 * planned, "{text}");
    let latency = &r["latency_ms"];
    assert!(num(&latency["max"]) >= 300.0, "a {stall:?} stall, {text}");
    assert!(num(&latency["p99"]) >= 150.0, "a {stall:?} stall, {text}");

    // A sweep: one record per point, value sizes outermost.
    let out = ctl
        .run(&[
            "bench",
            "set",
            "--clients",
            "1,3",
            "--value-size",
            "64,4096",
            "--duration",
            "500ms",
            "--data-dir",
            data_dir,
            "-o",
            "json",
        ])
        .ok();
    let points = out.json();
    let pairs: Vec<(u64, u64)> = points
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["clients"].as_u64().unwrap(),
                p["value_size"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(pairs, [(1, 64), (3, 64), (1, 4096), (3, 4096)], "{out}");
    for p in points.as_array().unwrap() {
        assert!(num(&p["requests"]) > 0.0, "{out}");
        assert!(num(&p["cpu"]["total"]["total_us"]) > 0.0, "{out}");
        assert!(p["latency_ms"]["p99"].as_f64().unwrap() > 0.0, "{out}");
    }

    // Bad input is refused before anything is sent.
    ctl.run(&["bench", "--clients", "4,0"])
        .fails(3, "--clients 0");
    ctl.run(&["bench", "--rate", "0"]).fails(3, "--rate");
    #[cfg(not(feature = "etcd"))]
    ctl.run(&["bench", "--target", "etcd"])
        .fails(3, "--features etcd");

    local.stop();
}
