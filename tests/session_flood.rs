//! A flood of client sessions against a real 3-node cluster, at the
//! product's own bounds: `MAX_SESSIONS` sessions, then more than the 64 MiB
//! of kept answers the state machine holds in all. Every replica applies
//! the same entries, so a state-machine panic on one of them kills every
//! node that applies it: the cluster must come out of it serving, and
//! serve again with its data after every node restarted from its disk.
//!
//! The attack speaks raw gRPC, because the crate's client acknowledges every
//! answer it gets and this one must leave its answers unacknowledged:
//! 1. client A writes once and never acknowledges the answer (it stays kept);
//! 2. `MAX_SESSIONS` more clients register, which evicts A, the least
//!    recently active;
//! 3. nine clients each send 8 CAS that fail against a 1 MB value, never
//!    acknowledged: each answer carries the value, ~72 MB kept in all, so the
//!    state machine must forget the oldest kept answers.

mod common;

use bytes::Bytes;
use common::cluster::{Cluster, http_get};
use raftkv::kv::{MAX_KEPT_BYTES, MAX_KEPT_BYTES_PER_CLIENT, MAX_SESSIONS};
use raftkv::pb;
use raftkv::pb::command::Op;
use raftkv::pb::write_response::Result as Answer;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Connections the flood spreads its registrations over, and the requests
/// in flight on each. Measured on 2 cores: the leader then puts 70-90
/// entries in each fsync, and the flood is bound by CPU (per registration
/// ~31 us on the leader, ~24 us in this client), so more in flight (up to
/// 16 x 128) or fewer connections change little.
const CONNECTIONS: usize = 4;
const IN_FLIGHT: usize = 128;

/// A value under the 1 MiB value limit, so that 8 answers carrying it
/// still fit one client's bound: an answer counts for its value plus a few
/// dozen bytes (encoding, bookkeeping), well within the 4096 allowed here.
const BIG: usize = 1_000_000;
const CAS_PER_CLIENT: usize = MAX_KEPT_BYTES_PER_CLIENT / (BIG + 4096);
/// Enough clients for their kept answers to pass the bound in all.
const CAS_CLIENTS: usize = MAX_KEPT_BYTES / (CAS_PER_CLIENT * BIG) + 1;

const NODES: [usize; 3] = [0, 1, 2];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_flood_past_every_bound_leaves_the_cluster_serving() {
    let started = Instant::now();
    let mut c = Cluster::start("session_flood", 3);

    // 1. Client A's answer stays kept.
    let a = register(&mut c).await;
    let a_value = Bytes::from_static(b"written by a client that never acknowledges");
    let answer = write(&mut c, set(Some(session(a, 1)), "a", a_value.clone())).await;
    assert!(matches!(answer.result, Some(Answer::Set(_))), "{answer:?}");

    // 2. The flood.
    let flood = Instant::now();
    let cpu_before = cpu(&c);
    flood_registrations(&mut c, MAX_SESSIONS).await;
    let took = flood.elapsed();
    println!(
        "{MAX_SESSIONS} sessions registered in {:.1} s ({:.0}/s)",
        took.as_secs_f64(),
        MAX_SESSIONS as f64 / took.as_secs_f64()
    );
    report_flood(&mut c, cpu_before).await;
    // A was evicted (a probe that is refused before it is applied): the
    // flood reached the bound, so what follows tests an evicted session.
    let answer = write(&mut c, set(Some(session(a, 2)), "a", "again".into())).await;
    assert!(
        refused_as_expired(&answer, "has no session"),
        "client {a} is still registered after {MAX_SESSIONS} more sessions: {answer:?}"
    );

    // 3. More kept answers than the state machine keeps in all.
    let big = Bytes::from(vec![b'v'; BIG]);
    write(&mut c, set(None, "big", big.clone())).await;
    let phase = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..CAS_CLIENTS {
        let id = register(&mut c).await;
        clients.push(id);
        for seq in 1..=CAS_PER_CLIENT as u64 {
            let answer = write(&mut c, failing_cas(session(id, seq))).await;
            match &answer.result {
                Some(Answer::Cas(r)) if !r.swapped && r.current.as_ref() == Some(&big) => {}
                _ => panic!("CAS {seq} of client {id}: {}", brief(&answer)),
            }
        }
    }
    let resident: Vec<String> = NODES
        .iter()
        .map(|&i| {
            format!(
                "{:.0}",
                sample(&metrics(&c, i), "process_resident_memory_bytes") / 1e6
            )
        })
        .collect();
    println!(
        "{} unacknowledged CAS answers of {BIG} bytes in {:.1} s; resident MB per node {}",
        CAS_CLIENTS * CAS_PER_CLIENT,
        phase.elapsed().as_secs_f64(),
        resident.join("/")
    );
    // The bound in all held: the oldest answer, of the least recently
    // active client, was forgotten, so its retry is refused, not applied.
    let answer = write(&mut c, failing_cas(session(clients[0], 1))).await;
    assert!(
        refused_as_expired(&answer, "no longer kept"),
        "the first CAS answer is still kept: {}",
        brief(&answer)
    );
    let last = answer.index;

    // Every node applied the last of them and still serves.
    for i in NODES {
        wait_applied(&mut c, i, last, "to apply the last CAS").await;
    }
    expect_data(&c, &a_value, &big, "after the flood").await;
    replicas_hash_alike(&c, "after the flood");

    // Every node replays its log from disk.
    for i in NODES {
        c.kill(i);
    }
    let restart = Instant::now();
    for i in NODES {
        c.spawn(i);
    }
    leader(&mut c, "after restarting every node").await;
    for i in NODES {
        wait_applied(&mut c, i, last, "to replay its log after a restart").await;
    }
    println!(
        "restarted: a leader and every node caught up in {:.1} s",
        restart.elapsed().as_secs_f64()
    );
    expect_data(&c, &a_value, &big, "after restarting every node").await;
    replicas_hash_alike(&c, "after restarting every node");
    println!("whole test: {:.1} s", started.elapsed().as_secs_f64());
}

/// `raftctl check`: every member's state hash at one log index is the
/// same (the kept answers, the evicted sessions and the byte counts
/// included).
fn replicas_hash_alike(c: &Cluster, when: &str) {
    let out = c.raftctl(&["check", "-o", "json"]);
    assert!(out.success(), "{when}: {out}");
    let json = out.json();
    assert_eq!(json["verdict"], "equal", "{when}: {json}");
    assert_eq!(json["members"].as_array().map(Vec::len), Some(3), "{json}");
}

fn session(client_id: u64, seq: u64) -> pb::Session {
    // No answer acknowledged (sequence numbers start at 1), so every
    // answer of this client stays kept.
    pb::Session {
        client_id,
        seq,
        first_incomplete: 1,
    }
}

fn request(session: Option<pb::Session>, op: Op) -> pb::WriteRequest {
    pb::WriteRequest {
        session,
        command: Some(pb::Command { op: Some(op) }),
    }
}

fn set(session: Option<pb::Session>, key: &str, value: Bytes) -> pb::WriteRequest {
    let op = Op::Set(pb::SetCmd {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value,
    });
    request(session, op)
}

/// A CAS on `big` that cannot match: its answer carries the current value.
fn failing_cas(session: pb::Session) -> pb::WriteRequest {
    let op = Op::Cas(pb::CasCmd {
        key: Bytes::from_static(b"big"),
        expected: Some(Bytes::from_static(b"not this")),
        value: Bytes::from_static(b"x"),
    });
    request(Some(session), op)
}

fn register_request() -> pb::WriteRequest {
    request(None, Op::Register(pb::RegisterSession {}))
}

/// Whether `answer` is a SESSION_EXPIRED refusal that says `why`.
fn refused_as_expired(answer: &pb::WriteResponse, why: &str) -> bool {
    matches!(&answer.result, Some(Answer::Error(e))
        if e.code == pb::kv_error::Code::SessionExpired as i32 && e.message.contains(why))
}

/// An answer without the 1 MB values it may carry.
fn brief(answer: &pb::WriteResponse) -> String {
    match &answer.result {
        Some(Answer::Cas(r)) => format!(
            "CAS swapped={} current={:?} bytes",
            r.swapped,
            r.current.as_ref().map(Bytes::len)
        ),
        _ => format!("{answer:?}"),
    }
}

async fn register(c: &mut Cluster) -> u64 {
    let answer = write(c, register_request()).await;
    match answer.result {
        Some(Answer::Register(r)) => r.client_id,
        _ => panic!("register: {}", brief(&answer)),
    }
}

/// `req` on the leader, retried on another leader (with the same session
/// and seq, so exactly once) if leadership moves; fails at once if a node
/// died.
async fn write(c: &mut Cluster, req: pb::WriteRequest) -> pb::WriteResponse {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut when = format!("for {}", what(&req));
    loop {
        let leader = leader(c, &when).await;
        match c.raw(leader).await.write(req.clone()).await {
            Ok(answer) => return answer.into_inner(),
            Err(e) => {
                // The node may still be exiting: then the next look for a
                // leader finds it dead.
                when = format!("after {} failed on node {leader}: {e}", what(&req));
                fail_if_any_died(c, &when).await;
                assert!(Instant::now() < deadline, "{when}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A request, briefly: its operation and session.
fn what(req: &pb::WriteRequest) -> String {
    let op = match req.command.as_ref().and_then(|c| c.op.as_ref()) {
        Some(Op::Register(_)) => "REGISTER",
        Some(Op::Set(_)) => "SET",
        Some(Op::Cas(_)) => "CAS",
        _ => "a write",
    };
    match &req.session {
        Some(s) => format!("{op} {} of client {}", s.seq, s.client_id),
        None => op.to_string(),
    }
}

/// The node that reports itself leader, looked for `when`. Unlike the
/// harness's `leader`, fails at once, with the logs, if a node died.
async fn leader(c: &mut Cluster, when: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for i in NODES {
            if c.status(i).await.is_some_and(|s| s.role == "leader") {
                return i;
            }
        }
        fail_if_any_died(c, &format!("no leader {when}")).await;
        assert!(Instant::now() < deadline, "no leader {when} within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Registers `n` sessions through the leader: `CONNECTIONS` connections with
/// `IN_FLIGHT` registrations each. A round that fails (leadership moved)
/// is followed by another on the new leader for what is left: a failed
/// registration may still have been applied, so at least `n` are.
async fn flood_registrations(c: &mut Cluster, n: usize) {
    let left = Arc::new(AtomicUsize::new(n));
    for round in 1..=5 {
        let leader = leader(c, &format!("for flood round {round}")).await;
        let mut workers = Vec::new();
        for _ in 0..CONNECTIONS {
            let kv = c.raw(leader).await;
            for _ in 0..IN_FLIGHT {
                let (mut kv, left) = (kv.clone(), Arc::clone(&left));
                workers.push(tokio::spawn(async move {
                    while take_one(&left) {
                        if let Err(e) = kv.write(register_request()).await {
                            left.fetch_add(1, Ordering::SeqCst);
                            return Some(e);
                        }
                    }
                    None
                }));
            }
        }
        let mut failures = Vec::new();
        for w in workers {
            failures.extend(w.await.unwrap());
        }
        if failures.is_empty() {
            return;
        }
        let why = format!(
            "flood round {round} on node {leader}: {} registrations failed, first: {}",
            failures.len(),
            failures[0]
        );
        fail_if_any_died(c, &why).await;
        println!("{why}; again for the {} left", left.load(Ordering::SeqCst));
    }
    panic!("the flood never got through");
}

/// Takes one unit of work from `left`, if any is left.
fn take_one(left: &AtomicUsize) -> bool {
    left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// Waits until node `i` has applied `index`; a node that dies meanwhile
/// fails the test with its log.
async fn wait_applied(c: &mut Cluster, i: usize, index: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if c.status(i).await.is_some_and(|s| s.applied_index >= index) {
            return;
        }
        fail_if_any_died(c, &format!("waiting for node {i} {what} (index {index})")).await;
        assert!(
            Instant::now() < deadline,
            "node {i} did not apply index {index} {what}: status {:?}",
            c.status(i).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Through the leader: linearizable GETs of what was written, and a new SET.
async fn expect_data(c: &Cluster, a_value: &Bytes, big: &Bytes, when: &str) {
    let client = c.client().await;
    let got = client.get(b"a").await.unwrap();
    assert_eq!(got.as_ref(), Some(a_value), "{when}: client A's key");
    let got = client.get(b"big").await.unwrap();
    assert!(got.as_ref() == Some(big), "{when}: the 1 MB value is gone");
    let key = format!("after {when}");
    client.set(key.as_bytes(), b"served").await.unwrap();
    let got = client.get(key.as_bytes()).await.unwrap();
    assert_eq!(got.as_deref(), Some(&b"served"[..]), "{when}: new key");
}

/// Fails the test, naming `why`, if any node's process has exited: the
/// bug this file guards against kills every node applying the same entry,
/// so the others are given a moment to follow before the logs are read.
async fn fail_if_any_died(c: &mut Cluster, why: &str) {
    if NODES.iter().all(|&i| c.running(i)) {
        return;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut report = format!("{why}\n");
    for i in NODES {
        if c.running(i) {
            report += &format!("node {i}: still running\n");
            continue;
        }
        // Reaped here, so the harness does not signal it when it drops.
        let status = c.nodes[i].child.take().unwrap().wait().unwrap();
        report += &format!("node {i}: DIED ({status}); the end of its log:\n");
        // Without the frames of a backtrace (RUST_BACKTRACE reaches the
        // nodes from the test's environment): the panic and what followed.
        let log = std::fs::read_to_string(c.log_path(i)).unwrap_or_default();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| {
                !l.starts_with(" ")
                    && !l.starts_with("stack backtrace:")
                    && !l.starts_with("note: ")
            })
            .collect();
        for line in &lines[lines.len().saturating_sub(8)..] {
            report += &format!("    {line}\n");
        }
    }
    panic!("{report}");
}

/// Node `i`'s `/metrics` text (empty if it does not answer).
fn metrics(c: &Cluster, i: usize) -> String {
    http_get(&c.nodes[i].http, "/metrics").map_or_else(|_| String::new(), |(_, text)| text)
}

/// The first sample of `name` without labels in the `/metrics` text.
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// CPU seconds (user and system) used so far by process `pid` ("self":
/// this test), from /proc in USER_HZ ticks (100 per second on Linux).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses; utime and
    // stime are the 14th and 15th fields of the whole line.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, r)| r)
        .split_whitespace()
        .collect();
    let ticks = |k: usize| {
        fields
            .get(k)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// [`cpu_seconds`] of each node and of this test.
fn cpu(c: &Cluster) -> [f64; 4] {
    let node = |i| cpu_seconds(&c.pid(i).to_string());
    [node(0), node(1), node(2), cpu_seconds("self")]
}

/// Where the flood's time went, for the test's output: CPU per process
/// since `before`, and how the leader batched entries per fsync.
async fn report_flood(c: &mut Cluster, before: [f64; 4]) {
    let leader = leader(c, "after the flood").await;
    let after = cpu(c);
    let used: Vec<String> = (0..4)
        .map(|i| format!("{:.1}", after[i] - before[i]))
        .collect();
    let text = metrics(c, leader);
    let m = |name: &str| sample(&text, name);
    let fsyncs = m("raftkv_wal_fsync_duration_seconds_count");
    let turns = m("raftkv_loop_turn_duration_seconds_count");
    println!(
        "CPU seconds during the flood: nodes {} (leader {leader}), test client {}; leader: \
         {:.0} entries per fsync, fsync {:.2} ms, loop turn {:.2} ms, resident {:.0} MB",
        used[..3].join("/"),
        used[3],
        m("raftkv_proposals_committed_total") / fsyncs,
        1000.0 * m("raftkv_wal_fsync_duration_seconds_sum") / fsyncs,
        1000.0 * m("raftkv_loop_turn_duration_seconds_sum") / turns,
        m("process_resident_memory_bytes") / 1e6,
    );
}
