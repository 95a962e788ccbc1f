//! Wall-clock jumps of minutes, forward and back, on every node of a live
//! cluster (libfaketime, Debian `faketime`): leases and key expiry run on
//! monotonic time and cluster time (docs/node.md, "Cluster time and
//! expiry"), so neither notices. No election follows a jump, a key with a
//! TTL is neither gone early nor alive late, also across a failover to a
//! node whose wall clock is an hour off, and the replicas agree.
//!
//! Prints SKIPPED, and passes, where libfaketime is missing.

mod common;

use common::cluster::Cluster;
use raftkv::client::Ttl;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// Each node's wall-clock offset, read by libfaketime from a file on every
/// call (so it can be changed while the node runs); the monotonic clock is
/// left alone.
struct Clocks {
    _dir: tempfile::TempDir,
    files: Vec<PathBuf>,
}

impl Clocks {
    fn new(n: usize) -> Clocks {
        let dir = tempfile::tempdir().unwrap();
        let files = (0..n)
            .map(|i| dir.path().join(format!("clock{i}")))
            .collect();
        let clocks = Clocks { _dir: dir, files };
        for i in 0..n {
            clocks.set(i, "+0s");
        }
        clocks
    }

    /// The `env` wrapper that runs node `i` on its own wall clock.
    fn wrapper(&self, i: usize) -> Vec<String> {
        vec![
            "env".into(),
            format!("LD_PRELOAD={LIBFAKETIME}"),
            format!("FAKETIME_TIMESTAMP_FILE={}", self.files[i].display()),
            "FAKETIME_NO_CACHE=1".into(),
            "FAKETIME_DONT_FAKE_MONOTONIC=1".into(),
        ]
    }

    /// Moves node `i`'s wall clock to `offset` from the real time (`+600s`).
    fn set(&self, i: usize, offset: &str) {
        write_atomic(&self.files[i], offset);
    }
}

fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{text}\n")).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

/// The term every node reports, which must be one.
async fn term(cluster: &Cluster) -> u64 {
    let mut terms = Vec::new();
    for i in 0..cluster.nodes.len() {
        if let Some(s) = cluster.status(i).await {
            terms.push(s.term);
        }
    }
    terms.dedup();
    assert_eq!(terms.len(), 1, "nodes disagree on the term: {terms:?}");
    terms[0]
}

/// `key` must be there while `set_at.elapsed() < alive`, gone once it is
/// past `gone`; in between either answer is right (the answer's own trip).
async fn check_expiry(client: &raftkv::client::Client, key: &[u8], set_at: Instant, ttl: u64) {
    let before = set_at.elapsed();
    let found = client.get(key).await.unwrap().is_some();
    let after = set_at.elapsed();
    let ttl = Duration::from_secs(ttl);
    if after < ttl.saturating_sub(Duration::from_millis(500)) {
        assert!(
            found,
            "{key:?} gone {after:?} after it was set with a TTL of {ttl:?}"
        );
    }
    if before > ttl + Duration::from_secs(1) {
        assert!(
            !found,
            "{key:?} alive {before:?} after it was set with a TTL of {ttl:?}"
        );
    }
}

/// The seconds `ttl` reports for a key set with `total` seconds at
/// `set_at` must be what real time left it: within a second of rounding
/// up, and the time the calls themselves took.
async fn check_ttl(client: &raftkv::client::Client, key: &[u8], set_at: Instant, total: u64) {
    let before = set_at.elapsed().as_secs_f64();
    let answer = client.ttl(key).await.unwrap();
    let after = set_at.elapsed().as_secs_f64();
    let Ttl::Seconds(left) = answer else {
        panic!("{key:?}: {answer:?}, expected seconds left");
    };
    let left = left as f64;
    assert!(
        left <= total as f64 - before + 1.5 && left >= total as f64 - after - 2.0,
        "TTL {left} s, {before:.1}–{after:.1} s after setting {total} s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wall_clock_jumps_break_neither_leases_nor_expiry() {
    if !Path::new(LIBFAKETIME).exists() {
        eprintln!("SKIPPED: {LIBFAKETIME} missing (Debian faketime)");
        return;
    }
    let clocks = Clocks::new(3);
    let mut cluster = Cluster::plan("clock-jumps", 3, &[]);
    for i in 0..3 {
        let wrapper = clocks.wrapper(i);
        let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
        cluster.spawn_under(i, &wrapper);
    }
    let client = cluster.client().await;
    client.set(b"warm", b"up").await.unwrap();
    let leader = cluster.leader(&[0, 1, 2], Duration::from_secs(5)).await;
    let term_before = term(&cluster).await;

    const SHORT: u64 = 6;
    const LONG: u64 = 120;
    client.set(b"short", b"v").await.unwrap();
    client.set(b"long", b"v").await.unwrap();
    let set_at = Instant::now();
    assert!(client.expire(b"short", SHORT).await.unwrap());
    assert!(client.expire(b"long", LONG).await.unwrap());

    // Forward ten minutes on the leader, back ten on one follower, an hour
    // ahead on the other.
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let jump = async |offsets: [&str; 3]| {
        clocks.set(leader, offsets[0]);
        clocks.set(followers[0], offsets[1]);
        clocks.set(followers[1], offsets[2]);
        tokio::time::sleep(Duration::from_secs(1)).await;
        client.set(b"after-jump", b"v").await.unwrap();
        check_expiry(&client, b"short", set_at, SHORT).await;
        check_ttl(&client, b"long", set_at, LONG).await;
        let term_now = term(&cluster).await;
        assert_eq!(term_now, term_before, "a jump caused an election");
    };
    jump(["+600s", "-600s", "+3600s"]).await;
    assert_eq!(
        cluster.leader(&[0, 1, 2], Duration::from_secs(1)).await,
        leader
    );

    // Back again, each the other way.
    jump(["-600s", "+600s", "-3600s"]).await;

    // The leader dies; the node an hour behind or ahead takes over. It
    // waits out the old lease on its monotonic clock, and expiry goes on
    // in cluster time.
    cluster.kill(leader);
    cluster.leader(&followers, Duration::from_secs(5)).await;
    client.set(b"after-failover", b"v").await.unwrap();
    check_expiry(&client, b"short", set_at, SHORT).await;
    check_ttl(&client, b"long", set_at, LONG).await;

    // Past the short TTL: gone, on every answer.
    let past = Duration::from_secs(SHORT + 2);
    if let Some(wait) = past.checked_sub(set_at.elapsed()) {
        tokio::time::sleep(wait).await;
    }
    check_expiry(&client, b"short", set_at, SHORT).await;
    assert!(client.get(b"short").await.unwrap().is_none());
    check_ttl(&client, b"long", set_at, LONG).await;

    // The old leader comes back on a clock ten minutes behind and agrees.
    let wrapper = clocks.wrapper(leader);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    cluster.spawn_under(leader, &wrapper);
    client.set(b"all-back", b"v").await.unwrap();
    let out = cluster.ctl().run(&["check", "--wait", "10s", "-o", "json"]);
    assert_eq!(out.json()["verdict"], "equal", "{}", out.json());
}
