//! Clock-rate skew (libfaketime, Debian `faketime`): the leader of a
//! `raftctl local` cluster restarted on a clock that runs at another rate
//! (its boot-time and monotonic clocks included), made leader again, then
//! cut off from both followers by the link proxies while a writer commits
//! new values through the other two and a reader keeps asking the cut-off
//! leader. The lease argument (docs/consensus.md) holds only while every
//! clock runs within the drift bound ρ (1 % by default) of real time:
//!
//! - at 0.991 of real time (within the bound) no read may be stale;
//! - at a quarter of real time (far beyond it) the leader believes its
//!   lease lasts four times as long; nothing in the node can tell, since it
//!   has no clock but its own, so it answers reads from the lease after the
//!   majority has moved on, and the linearizability checker must find the
//!   stale read.
//!
//! Prints SKIPPED, and passes, where libfaketime is missing.

mod common;

use std::path::Path;
use std::time::Duration;

use backon::{ConstantBuilder, Retryable};
use common::local::{Local, free_base_port};
use raftkv::check::linearizability::{self, CheckResult, Op, OpKind};
use raftkv::client::{Client, ClientOptions};
use raftkv::ctl::fault::Partition;
use raftkv::ctl::local::clock;
use raftkv::ctl::local::control::{self, Answer, Request};
use raftkv::ctl::local::links::LinkRule;
use tokio::time::Instant;

const KEY: &str = "skewed";

/// What one cut showed: the history of the key, and the stale reads seen
/// directly (a read of the cut-off leader, sent after a newer write was
/// acknowledged, that returned an older value).
struct Cut {
    history: Vec<Op>,
    stale: Vec<String>,
}

fn client(endpoints: Vec<String>, timeout: Duration) -> Client {
    let options = ClientOptions {
        timeout,
        attempt_timeout: timeout,
        connect_timeout: Duration::from_millis(300),
        ..ClientOptions::default()
    };
    Client::lazy(endpoints, options).unwrap()
}

async fn ask(dir: &Path, request: Request) -> Answer {
    let answer = control::ask(dir, &request, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(!matches!(answer, Answer::Error(_)), "{answer:?}");
    answer
}

/// Node `id` leads with a lease, handing leadership to it as needed.
async fn make_leader(admin: &Client, id: u64, endpoint: &str) {
    // Each try that finds another leader asks for a transfer; the next
    // one, 300 ms later, looks again (100 tries: 30 s).
    let leads = || async {
        match admin.status(endpoint).await {
            Ok(s) if s.leads_with_lease() => Ok(()),
            _ => {
                let _ = admin.transfer_leader(id).await;
                Err(())
            }
        }
    };
    let tries = ConstantBuilder::default()
        .with_delay(Duration::from_millis(300))
        .with_max_times(100);
    leads
        .retry(tries)
        .await
        .unwrap_or_else(|()| panic!("node {id} never led"));
}

/// Cuts leader `leader` off (both directions of every link) for 4 s while
/// a writer sets new values through the others and a reader asks the
/// cut-off leader alone, then heals.
async fn cut_off(dir: &Path, base: u16, leader: u64, round: u64) -> Cut {
    let endpoint = |id: u64| format!("127.0.0.1:{}", u64::from(base) + 10 * id);
    let others: Vec<String> = (0..3).filter(|&i| i != leader).map(endpoint).collect();
    let epoch = Instant::now();
    let ns = || epoch.elapsed().as_nanos() as u64;
    let mut history = Vec::new();
    let first = format!("r{round}-v0");
    // Short attempts: a follower's redirect to the cut-off leader must not
    // hold a write back for long.
    let writer = client(others.clone(), Duration::from_millis(200));
    let call = ns();
    client(vec![endpoint(leader)], Duration::from_secs(5))
        .set(KEY.as_bytes(), first.as_bytes())
        .await
        .unwrap();
    history.push(Op {
        client: 0,
        key: KEY.into(),
        kind: OpKind::Set {
            value: first.clone(),
        },
        call,
        ret: Some(ns()),
        at: None,
    });
    // The write reached the followers before the cut: they must know it.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let rules = Partition::IsolateLeader
        .cut(leader, &[0, 1, 2])
        .into_iter()
        .map(|(from, to)| LinkRule::cut(from, to))
        .collect();
    ask(
        dir,
        Request::Links {
            rules,
            heal_after_ms: 60_000,
        },
    )
    .await;
    let cut_at = Instant::now();
    let end = cut_at + Duration::from_secs(4);

    let write = async {
        let mut ops = Vec::new();
        // (value, acknowledged at)
        let mut acked: Vec<(String, u64)> = Vec::new();
        let mut n = 0;
        while Instant::now() < end {
            n += 1;
            let value = format!("r{round}-v{n}");
            let call = ns();
            let ok = writer.set(KEY.as_bytes(), value.as_bytes()).await.is_ok();
            let ret = ok.then(&ns);
            if let Some(at) = ret {
                acked.push((value.clone(), at));
            }
            ops.push(Op {
                client: 1,
                key: KEY.into(),
                kind: OpKind::Set { value },
                call,
                ret,
                at: None,
            });
            if !ok {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        (ops, acked)
    };
    let read = async {
        let reader = client(vec![endpoint(leader)], Duration::from_millis(300));
        let mut ops = Vec::new();
        while Instant::now() < end {
            let call = ns();
            if let Ok(value) = reader.get(KEY.as_bytes()).await {
                let value = value.map(|v| String::from_utf8_lossy(&v).into_owned());
                ops.push(Op {
                    client: 2,
                    key: KEY.into(),
                    kind: OpKind::Get {
                        result: Some(value),
                    },
                    call,
                    ret: Some(ns()),
                    at: None,
                });
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        ops
    };
    let ((writes, acked), reads) = tokio::join!(write, read);
    ask(dir, Request::Heal).await;

    // Directly: a read sent after a write was acknowledged must not return
    // a value older than that write (values are numbered in write order).
    let number = |v: &str| -> u64 { v.rsplit('v').next().unwrap().parse().unwrap() };
    let mut stale = Vec::new();
    for read in &reads {
        let OpKind::Get {
            result: Some(Some(got)),
        } = &read.kind
        else {
            continue;
        };
        if let Some((newest, at)) = acked.iter().rev().find(|(_, at)| *at < read.call) {
            if number(got) < number(newest) {
                stale.push(format!(
                    "a read sent {:.0} ms after the cut, {:.0} ms after {newest} was \
                     acknowledged, returned {got}",
                    (read.call as f64 / 1e6) - (cut_at - epoch).as_secs_f64() * 1e3,
                    (read.call - at) as f64 / 1e6
                ));
            }
        }
    }
    history.extend(writes);
    history.extend(reads);
    Cut { history, stale }
}

/// Restarts the leader on a clock at `rate` of real time, makes it leader
/// again and cuts it off `rounds` times; what each cut showed.
async fn skewed_leader_cut_off(rate: f64, rounds: u64) -> Vec<Cut> {
    let dir = tempfile::tempdir().unwrap();
    let base = free_base_port();
    let local = Local::start(dir.path(), base);
    let endpoints: Vec<String> = (0..3)
        .map(|i| format!("127.0.0.1:{}", u64::from(base) + 10 * i))
        .collect();
    let admin = client(endpoints.clone(), Duration::from_secs(2));
    let leader = local.leader();
    let answer = ask(
        dir.path(),
        Request::Clock {
            id: leader,
            rate_ppm: Some((rate * 1e6).round() as u32),
            grace_ms: 10_000,
            restore_after_ms: 600_000,
        },
    )
    .await;
    let Answer::Clock {
        pid: Some(pid),
        rate_ppm: Some(_),
    } = answer
    else {
        panic!("{answer:?}");
    };
    // The supervisor really preloaded libfaketime at that rate.
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(
        environ.contains(&format!("FAKETIME=+0 x{rate}")),
        "{environ}"
    );
    let mut cuts = Vec::new();
    for round in 0..rounds {
        make_leader(&admin, leader, &endpoints[leader as usize]).await;
        // The node's own uptime runs at the rate: its clocks are skewed.
        if round == 0 {
            let a = admin.status(&endpoints[leader as usize]).await.unwrap();
            let real = Instant::now();
            tokio::time::sleep(Duration::from_secs(2)).await;
            let b = admin.status(&endpoints[leader as usize]).await.unwrap();
            let seen = (b.uptime_seconds - a.uptime_seconds) / real.elapsed().as_secs_f64();
            assert!(
                (seen - rate).abs() < 0.02 + (rate - 1.0).abs() / 4.0,
                "node {leader}'s clock ran at x{seen:.3}, not x{rate}"
            );
        }
        cuts.push(cut_off(dir.path(), base, leader, round).await);
        // Back to a healthy cluster before the next round.
        local
            .ctl()
            .run(&["check", "--wait", "15s", "--timeout", "20s"])
            .ok();
    }
    local.stop();
    cuts
}

fn libfaketime_missing() -> bool {
    match clock::library() {
        Ok(_) => false,
        Err(e) => {
            eprintln!("SKIPPED: {e}");
            true
        }
    }
}

/// Within the drift bound: every cut's history is linearizable and no read
/// of the cut-off leader was stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_within_the_drift_bound_serves_no_stale_read_when_cut_off() {
    if libfaketime_missing() {
        return;
    }
    for (i, cut) in skewed_leader_cut_off(0.991, 3).await.iter().enumerate() {
        assert!(cut.stale.is_empty(), "cut {i}: {:?}", cut.stale);
        let result = linearizability::check(&cut.history);
        assert_eq!(result, CheckResult::Ok, "cut {i}");
        let reads = cut
            .history
            .iter()
            .filter(|o| matches!(o.kind, OpKind::Get { .. }))
            .count();
        assert!(reads > 10, "cut {i}: only {reads} reads answered");
    }
}

/// Far beyond the bound: the leader at a quarter of real time answers
/// stale reads, and the checker names them. Nothing refuses: the node
/// cannot see its own clock's rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_at_quarter_speed_serves_stale_reads_when_cut_off() {
    if libfaketime_missing() {
        return;
    }
    let cuts = skewed_leader_cut_off(0.25, 3).await;
    let caught: Vec<String> = cuts
        .iter()
        .filter_map(|cut| match linearizability::check(&cut.history) {
            CheckResult::Violation { key, explanation } => Some(format!("{key}: {explanation}")),
            _ => None,
        })
        .collect();
    let stale: Vec<&String> = cuts.iter().flat_map(|c| &c.stale).collect();
    eprintln!("stale reads: {stale:#?}\nchecker: {caught:#?}");
    assert!(!stale.is_empty(), "no stale read in {} cuts", cuts.len());
    // Every cut with a stale read seen directly is a violation to the checker.
    for (i, cut) in cuts.iter().enumerate() {
        if !cut.stale.is_empty() {
            assert!(
                matches!(
                    linearizability::check(&cut.history),
                    CheckResult::Violation { .. }
                ),
                "cut {i}: stale reads {:?} but the checker passed the history",
                cut.stale
            );
        }
    }
}
