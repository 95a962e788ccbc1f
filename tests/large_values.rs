//! Large values do not cost the leader its lease (docs/node.md, "Peers";
//! docs/performance.md, "Large values and the lease"): 16 writers, each on its own
//! connection, overwrite their own key with 1 MiB values for 12 s on a
//! 3-node cluster. Every append then carries a megabyte, and a heartbeat
//! that queues behind them on the way to a follower, or whose answer
//! queues on the way back, arrives after the lease (250 ms) ran out.
//!
//! The leader must keep its term and lease throughout: no term change seen
//! by the probe, no "lease not renewed" in any node's log, no failed write,
//! and at least [`MIN_WRITES_PER_S`] writes/s. With one stream per peer,
//! heartbeats queued behind the appends and the leader stepped down in
//! every run. Prints a `REPORT` line.
//!
//! Ignored in `cargo test` until the node loop's own stalls are gone: it
//! still fails about one run in three (an open defect, docs/performance.md).

mod common;

use common::cluster::Cluster;
use common::lease_watch::{TermProbe, lease_losses};
use raftkv::client::{Client, ClientOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const WRITERS: usize = 16;
const VALUE_BYTES: usize = 1 << 20;
const FLOOD: Duration = Duration::from_secs(12);
/// Far below what the cluster does on a loaded 2-core machine (50–80/s
/// with three compilers beside it), far above what a cluster that keeps
/// losing its leader does (12.8/s in a 20 s bench).
const MIN_WRITES_PER_S: f64 = 8.0;

/// A writer's connection: a megabyte's append can take a while on a busy
/// machine, and a retried attempt would send it again.
async fn writer_client(c: &Cluster) -> Client {
    let opts = ClientOptions {
        attempt_timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    }
    .with_timeout(Duration::from_secs(15));
    Client::connect(c.endpoints(), opts)
        .await
        .expect("cluster reachable")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "still loses the lease about one run in three, even on an idle machine: \
            the node loop applying 1 MiB entries (docs/performance.md, \
            \"Large values and the lease\"); run with --ignored"]
async fn leader_keeps_its_lease_while_16_writers_send_1_mib_values() {
    let c = Cluster::start("large-values", 3);
    let leader = c.leader(&[0, 1, 2], Duration::from_secs(10)).await;
    let first_term = c.status(leader).await.expect("leader answers").term;
    let probe = TermProbe::start(c.endpoints(), || {});

    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let client = writer_client(&c).await;
        let (ok, failed) = (ok.clone(), failed.clone());
        writers.push(tokio::spawn(async move {
            let value = vec![b'a' + w as u8; VALUE_BYTES];
            let key = format!("large-{w:02}");
            while started.elapsed() < FLOOD {
                match client.set(key.as_bytes(), &value).await {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("writer {w}: write failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let seen = probe.stop().await;
    let losses = lease_losses(&c);
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let per_s = ok as f64 / elapsed;
    let mut terms: Vec<u64> = seen.iter().map(|s| s.term).collect();
    terms.dedup();
    println!(
        "REPORT writers={WRITERS} value={VALUE_BYTES} writes={ok} writes_per_s={per_s:.1} failed={failed} \
         step_downs={} terms={terms:?}",
        losses.len()
    );

    assert!(
        losses.is_empty(),
        "the leader lost its lease:\n{}",
        losses.join("\n")
    );
    assert!(
        seen.iter().all(|s| s.term == first_term),
        "the term changed during the flood (from {first_term}): {seen:?}"
    );
    assert!(
        seen.iter()
            .filter(|s| s.node == leader)
            .all(|s| s.role == "leader"),
        "node {leader} stopped leading during the flood: {seen:?}"
    );
    assert_eq!(failed, 0, "writes failed");
    assert!(
        per_s >= MIN_WRITES_PER_S,
        "{per_s:.1} writes/s of 1 MiB, fewer than {MIN_WRITES_PER_S}"
    );
}
