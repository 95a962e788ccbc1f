//! Backup and restore for real (docs/operations.md, "Backup and
//! restore"): `raftctl snapshot save` against a `raftctl local` cluster
//! under a write load, `raftctl snapshot restore` of each member into a
//! fresh directory, and `raftctl local` on that directory. Every write
//! acknowledged at or below the backup's index is in the new cluster and
//! none above it (the backup is one consistent point of the log), every
//! write acknowledged before the save started is at or below that index,
//! TTLs go on in cluster time (the time the cluster was down does not
//! count), and the new cluster has another id and takes writes. Damaged
//! backups, and a restore onto a node's data, are refused and change
//! nothing.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::ctl::Ctl;
use common::local::{Local, free_base_port};
use raftkv::client::{Client, ClientOptions, Ttl};
use raftkv::pb;

const WRITERS: usize = 4;
/// Bytes per value written by the load (the state grows to a few MB, so a
/// save takes a while and writes go on during it).
const VALUE_BYTES: usize = 512;
const LONG_TTL: u64 = 600;

/// One acknowledged write of the load: its key, the log index that
/// answered it, and when the answer came.
struct Ack {
    key: String,
    index: u64,
    at: Instant,
}

fn endpoints(base: u16) -> Vec<String> {
    Local::endpoints(base)
        .split(',')
        .map(str::to_string)
        .collect()
}

async fn connect(base: u16) -> Client {
    Client::connect(endpoints(base), ClientOptions::default())
        .await
        .unwrap()
}

fn value_of(key: &str) -> Vec<u8> {
    let mut v = key.as_bytes().to_vec();
    v.resize(VALUE_BYTES, b'.');
    v
}

/// Writers setting unique keys until `stop`; the acknowledged writes, and
/// the keys whose outcome is unknown (a failed write may still apply).
fn load(base: u16, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<(Vec<Ack>, Vec<String>)>> {
    (0..WRITERS)
        .map(|w| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let client = connect(base).await;
                let (mut acks, mut unknown) = (Vec::new(), Vec::new());
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("load-{w}-{n:07}");
                    n += 1;
                    let op = pb::command::Op::Set(pb::SetCmd {
                        key: Bytes::from(key.clone()),
                        value: Bytes::from(value_of(&key)),
                    });
                    match client.write_at(op).await {
                        Ok((_, index)) => acks.push(Ack {
                            key,
                            index,
                            at: Instant::now(),
                        }),
                        Err(_) => unknown.push(key),
                    }
                }
                (acks, unknown)
            })
        })
        .collect()
}

fn damaged_copy(file: &Path, name: &str, change: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut bytes = std::fs::read(file).unwrap();
    change(&mut bytes);
    let path = file.with_file_name(name);
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_into_a_new_cluster() {
    let old_dir = tempfile::tempdir().unwrap();
    let old_base = free_base_port();
    let old = tokio::task::block_in_place(|| Local::start(old_dir.path(), old_base));
    let client = connect(old_base).await;
    let old_cluster = client
        .status(&endpoints(old_base)[0])
        .await
        .unwrap()
        .cluster_id;

    // Keys of every kind before the load: a plain one, a counter, one
    // that expires long after the test and one that expires at once.
    client.set(b"plain", b"p").await.unwrap();
    for _ in 0..3 {
        client.incr(b"counter").await.unwrap();
    }
    client.set(b"ttl-long", b"l").await.unwrap();
    assert!(client.expire(b"ttl-long", LONG_TTL).await.unwrap());
    client.set(b"ttl-short", b"s").await.unwrap();
    assert!(client.expire(b"ttl-short", 1).await.unwrap());

    let stop = Arc::new(AtomicBool::new(false));
    let writers = load(old_base, stop.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(client.get(b"ttl-short").await.unwrap(), None, "expired");

    let backups = tempfile::tempdir().unwrap();
    let file = backups.path().join("raftkv.backup");
    let file_arg = file.display().to_string();
    let ctl = Ctl::new().endpoints(&Local::endpoints(old_base));
    let Ttl::Seconds(ttl_before) = client.ttl(b"ttl-long").await.unwrap() else {
        panic!("ttl-long has a TTL")
    };
    let save_started = Instant::now();
    let saved = ctl
        .run_async(&["snapshot", "save", &file_arg, "-o", "json"])
        .await
        .ok()
        .json();
    let save_ended = Instant::now();
    // The load goes on after the backup's point, then stops.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acks = Vec::new();
    let mut unknown = Vec::new();
    for writer in writers {
        let (a, u) = writer.await.unwrap();
        acks.extend(a);
        unknown.extend(u);
    }
    let index = saved["index"].as_u64().unwrap();
    let keys = saved["keys"].as_u64().unwrap();
    assert_eq!(saved["cluster_id"], old_cluster.as_str());
    assert!(!file.with_file_name("raftkv.backup.tmp").exists());
    let during = acks
        .iter()
        .filter(|a| a.at > save_started && a.at < save_ended)
        .count();
    println!(
        "saved {} keys ({} bytes) at index {index} in {:.3}s; {} writes acknowledged, {during} \
         while the save ran",
        keys,
        saved["file_bytes"],
        saved["seconds"].as_f64().unwrap(),
        acks.len()
    );
    for ack in acks.iter().filter(|a| a.at < save_started) {
        assert!(
            ack.index <= index,
            "{} was acknowledged at index {} before the save started, yet the backup is at {index}",
            ack.key,
            ack.index
        );
    }
    assert!(
        acks.iter().any(|a| a.index > index),
        "the load went on past the backup"
    );
    tokio::task::block_in_place(|| old.stop());

    // `status` verifies the file and says what `save` said.
    let status = Ctl::new()
        .run(&["snapshot", "status", &file_arg, "-o", "json"])
        .ok()
        .json();
    for field in [
        "index",
        "term",
        "cluster_id",
        "keys",
        "sha256",
        "file_bytes",
    ] {
        assert_eq!(status[field], saved[field], "{field}");
    }

    // Damaged files are refused, by `status` and by `restore`, and the
    // restore creates nothing.
    let refused_dir = backups.path().join("refused/node-0");
    let refused_arg = refused_dir.display().to_string();
    let corrupt = damaged_copy(&file, "corrupt.backup", |b| {
        let middle = b.len() / 2;
        b[middle] ^= 0x01;
    });
    let truncated = damaged_copy(&file, "truncated.backup", |b| b.truncate(b.len() / 2));
    for (damaged, says) in [(&corrupt, "is corrupt"), (&truncated, "is truncated")] {
        Ctl::new()
            .run(&["snapshot", "status", damaged])
            .fails(3, says);
        let stderr = Ctl::new()
            .run(&[
                "snapshot",
                "restore",
                damaged,
                "--data-dir",
                &refused_arg,
                "--member",
                "0",
            ])
            .fails(3, says);
        assert!(stderr.contains("nothing was changed"), "{stderr}");
        assert!(!refused_dir.exists(), "a refused restore created nothing");
    }

    // Restore each member, as for `raftctl local --data-dir DIR`.
    let new_dir = tempfile::tempdir().unwrap();
    let mut new_cluster = None;
    for member in 0..3 {
        let dir = new_dir.path().join(format!("node-{member}"));
        let restored = Ctl::new()
            .run(&[
                "snapshot",
                "restore",
                &file_arg,
                "--data-dir",
                dir.to_str().unwrap(),
                "--member",
                &member.to_string(),
                "-o",
                "json",
            ])
            .ok()
            .json();
        assert_eq!(restored["index"].as_u64(), Some(index));
        assert_eq!(restored["from_cluster_id"], old_cluster.as_str());
        let id = restored["cluster_id"].as_str().unwrap().to_string();
        assert_ne!(id, old_cluster, "a restored cluster has a new id");
        assert_eq!(*new_cluster.get_or_insert(id.clone()), id, "members agree");
    }
    let new_cluster = new_cluster.unwrap();

    // A restore onto a node's data is refused and leaves it as it was.
    let identity = new_dir.path().join("node-0/identity");
    let before = std::fs::read(&identity).unwrap();
    let dir0 = new_dir.path().join("node-0").display().to_string();
    Ctl::new()
        .run(&[
            "snapshot",
            "restore",
            &file_arg,
            "--data-dir",
            &dir0,
            "--member",
            "0",
        ])
        .fails(3, "is not empty");
    assert_eq!(std::fs::read(&identity).unwrap(), before);

    // The time the cluster is down does not count against TTLs.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let new_base = free_base_port();
    let restarted = Instant::now();
    let new = tokio::task::block_in_place(|| Local::start(new_dir.path(), new_base));
    let client = connect(new_base).await;
    for endpoint in endpoints(new_base) {
        let status = client.status(&endpoint).await.unwrap();
        assert_eq!(status.cluster_id, new_cluster);
    }

    // Exactly the writes at or below the backup's index.
    let (items, _) = client.range(b"load-", 0, false).await.unwrap();
    let restored: BTreeMap<String, Bytes> = items
        .into_iter()
        .map(|kv| (String::from_utf8(kv.key.to_vec()).unwrap(), kv.value))
        .collect();
    let mut below = 0;
    for ack in &acks {
        match restored.get(&ack.key) {
            Some(value) if ack.index <= index => {
                assert_eq!(&value[..], &value_of(&ack.key)[..], "{}", ack.key);
                below += 1;
            }
            None if ack.index > index => {}
            found => panic!(
                "{} (acknowledged at index {}, backup at {index}) restored as {:?}",
                ack.key,
                ack.index,
                found.map(|v| v.len())
            ),
        }
    }
    let acked: std::collections::BTreeSet<&str> = acks.iter().map(|a| a.key.as_str()).collect();
    for key in restored.keys() {
        assert!(
            acked.contains(key.as_str()) || unknown.contains(key),
            "{key} was never written"
        );
    }
    assert!(below > 0, "the backup holds acknowledged writes");
    assert_eq!(
        client.get(b"plain").await.unwrap().as_deref(),
        Some(&b"p"[..])
    );
    assert_eq!(client.incr(b"counter").await.unwrap(), 4);
    assert_eq!(client.get(b"ttl-short").await.unwrap(), None);

    // ttl-long: cluster time ran for at most the save and the new
    // cluster's life since the TTL was read before the save.
    let Ttl::Seconds(ttl_after) = client.ttl(b"ttl-long").await.unwrap() else {
        panic!("ttl-long kept its TTL")
    };
    let ran = (save_ended - save_started) + restarted.elapsed();
    assert!(ttl_after <= ttl_before, "{ttl_after} > {ttl_before}");
    assert!(
        ttl_after + ran.as_secs() + 2 >= ttl_before,
        "ttl-long lost {}s but the clusters ran for {ran:?}",
        ttl_before - ttl_after
    );

    // The new cluster takes writes, after the backup's index.
    let op = pb::command::Op::Set(pb::SetCmd {
        key: Bytes::from_static(b"after-restore"),
        value: Bytes::from_static(b"yes"),
    });
    let (_, at) = client.write_at(op).await.unwrap();
    assert!(at > index, "{at} <= {index}");
    assert_eq!(
        client.get(b"after-restore").await.unwrap().as_deref(),
        Some(&b"yes"[..])
    );
    tokio::task::block_in_place(|| new.stop());
}

#[test]
fn a_failed_save_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("never.backup");
    // Nothing listens on these ports.
    let base = free_base_port();
    let out = Ctl::new().endpoints(&Local::endpoints(base)).run(&[
        "snapshot",
        "save",
        file.to_str().unwrap(),
        "--timeout",
        "2s",
    ]);
    assert_eq!(out.code, Some(2), "unreachable: {out}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "{out}");
}
