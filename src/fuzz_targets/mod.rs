//! The bodies of the fuzz targets in `fuzz/` (cargo-fuzz, libFuzzer), kept
//! in the library so that each target there is a one-line call and
//! `tests/fuzz_corpus.rs` replays the committed corpora through the same
//! code on stable Rust. Each function takes the fuzzer's bytes, never
//! returns an error, and panics only when a property it checks does not
//! hold. What each one checks: docs/testing.md.

mod config;
mod kv_apply;
mod peer_message;
mod repair;
mod snapshot;
mod wal;

pub use config::config;
pub use kv_apply::kv_apply;
pub use peer_message::peer_message;
pub use snapshot::snapshot;
pub use wal::wal;

use arbitrary::Unstructured;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A target's name (as `fuzz/` and its corpus directories name it) and body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target.
pub const TARGETS: &[Target] = &[
    ("wal", wal),
    ("snapshot", snapshot),
    ("peer_message", peer_message),
    ("config", config),
    ("kv_apply", kv_apply),
];

/// State machine limits as small as the simulator's, so that a short input
/// reaches every bound: session evictions, forgotten answers, refusals of
/// long keys and values.
fn small_limits() -> crate::kv::Limits {
    crate::kv::Limits {
        max_key_bytes: 8,
        max_value_bytes: 64,
        max_sessions: 3,
        max_kept_bytes_per_client: 300,
        max_kept_bytes: 500,
    }
}

/// A fresh directory for one input, removed on drop. Under `/dev/shm`
/// where it exists: storage fsyncs on every open, which a RAM disk makes
/// free, so both the fuzzer and the corpus replay stay fast.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Scratch {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = base.join(format!("raftkv-fuzz-{what}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("cannot create a scratch directory");
        Scratch(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A u64 that is usually small (one byte below 0xf0) and sometimes any
/// value (0xf0 and up: eight more bytes), so that both the common case and
/// the edges (overflow at `u64::MAX`) are cheap for the fuzzer to reach.
fn number(u: &mut Unstructured) -> u64 {
    match u.arbitrary::<u8>().unwrap_or(0) {
        b if b < 0xf0 => u64::from(b),
        _ => u.arbitrary::<u64>().unwrap_or(u64::MAX),
    }
}

/// Decodes values from `u` while it has bytes, at most `max` (so that one
/// input stays quick), and hands each to `f`.
fn each<'a, T: arbitrary::Arbitrary<'a>>(
    u: &mut Unstructured<'a>,
    max: usize,
    mut f: impl FnMut(T),
) {
    for _ in 0..max {
        if u.is_empty() {
            break;
        }
        let Ok(value) = u.arbitrary() else {
            break;
        };
        f(value);
    }
}

/// The bytes that [`number`] reads back as `n`.
fn put_number(n: u64, out: &mut Vec<u8>) {
    match u8::try_from(n) {
        Ok(b) if b < 0xf0 => out.push(b),
        _ => {
            out.push(0xf0);
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
}

/// Starting inputs for `target` built from valid data (what `Storage` and
/// the state machine write, configuration files like the chart's), for
/// the targets whose inputs are hard to find from nothing; empty for the
/// others. `tests/fuzz_corpus.rs` writes them into the corpus on request.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "wal" => wal::seeds(),
        "snapshot" => snapshot::seeds(),
        "config" => config::seeds(),
        "kv_apply" => kv_apply::seeds(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_back() {
        for n in [0, 1, 0xef, 0xf0, 0xff, 1 << 40, u64::MAX] {
            let mut bytes = Vec::new();
            put_number(n, &mut bytes);
            assert_eq!(number(&mut Unstructured::new(&bytes)), n);
        }
    }
}
