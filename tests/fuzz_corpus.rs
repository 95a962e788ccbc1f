//! Replays what the fuzzers kept (`fuzz/corpus/<target>/`) and every input
//! that once crashed one (`fuzz/regressions/<target>/`) through the same
//! target bodies (`raftkv::fuzz_targets`), on stable Rust, so that
//! `cargo test` guards what the fuzzers found. See docs/testing.md.
//!
//! `RAFTKV_WRITE_SEEDS=1 cargo test --release --test fuzz_corpus seeds`
//! writes the targets' starting inputs (`fuzz_targets::seeds`) into the
//! corpus directories.

use raftkv::fuzz_targets::{TARGETS, seeds};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir`, sorted (none if it does not exist).
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory").path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths
}

/// Runs every corpus and regression input of `target`; fails naming each
/// input that panics.
fn replay(target: &str) {
    let (_, run) = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("a target of fuzz_targets::TARGETS");
    let corpus = files(&fuzz_dir().join("corpus").join(target));
    assert!(!corpus.is_empty(), "no corpus for {target}");
    let regressions = files(&fuzz_dir().join("regressions").join(target));
    let mut failed = Vec::new();
    for path in corpus.iter().chain(&regressions) {
        let data = std::fs::read(path).expect("readable input");
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(failed.is_empty(), "{target}: inputs that fail: {failed:#?}");
}

#[test]
fn wal() {
    replay("wal");
}

#[test]
fn snapshot() {
    replay("snapshot");
}

#[test]
fn peer_message() {
    replay("peer_message");
}

#[test]
fn config() {
    replay("config");
}

#[test]
fn kv_apply() {
    replay("kv_apply");
}

#[test]
fn every_target_is_replayed() {
    let names: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names,
        ["wal", "snapshot", "peer_message", "config", "kv_apply"]
    );
}

/// The seeds are valid inputs that pass; written into the corpus only on
/// request, so that a normal run changes no file.
#[test]
fn seeds_pass() {
    let write = std::env::var_os("RAFTKV_WRITE_SEEDS").is_some();
    for (target, run) in TARGETS {
        for (i, seed) in seeds(target).iter().enumerate() {
            run(seed);
            if write {
                let dir = fuzz_dir().join("corpus").join(target);
                std::fs::create_dir_all(&dir).expect("corpus directory");
                std::fs::write(dir.join(format!("seed-{i}")), seed).expect("seed file");
            }
        }
    }
}
