//! Golden-transcript interaction tests of the consensus core, in the spirit
//! of etcd-io/raft's datadriven `testdata/*.txt` (our own format and
//! runner). They drive `raftkv::raft` through its public inputs only.
//!
//! Each file in `tests/interaction/` (`*.txt`) is a script: `#` lines say what it
//! proves, `> command` lines drive real cores (see `cluster.rs` for the
//! commands), and the lines after each command are the exact output it
//! produced (messages sent with their fields, hard state, entries persisted
//! and applied, role and lease events, status lines). A blank line ends a
//! command's output. The runner replays every file and compares;
//! `RAFTKV_REWRITE=1 cargo test --release --test interaction`
//! writes the actual output back instead (review the diff before
//! committing it).
//!
//! Commands (nodes are numbers; `A->B` links may use `*` for any node):
//! - `nodes 1 2 3 [max_inflight=N] [max_batch_entries=N]`: founding voters
//!   (default `Config` otherwise: T 300ms, heartbeat 50ms, L 250ms, ρ 1%);
//!   `add-node N`: a node with an empty disk.
//! - `campaign N`: the clock jumps to N's next deadline and N ticks;
//!   `tick +Dms [N ...]`: the clock moves on, then the nodes tick (all
//!   running ones by default). One clock for all: drift is the simulator's.
//! - `ready N`: N's `Ready` is persisted, its messages go to the network,
//!   its committed entries are applied; `stabilize`: ready every node and
//!   deliver every message until nothing moves; `heartbeats N`: what N may
//!   send while its last `Ready` is still being synced (`take_heartbeats`).
//! - `deliver [A->B]`, `drop A->B`: messages in flight; `cut A->B`,
//!   `isolate N`, `heal`: links that lose what they carry; `conn-lost A->B`:
//!   A's connection to B broke (`Raft::connection_lost`).
//! - `propose N VALUE`, `read N ID`, `conf N add-learner|promote|remove M`,
//!   `transfer N M`, `compact N` (snapshot what N applied), `crash N`,
//!   `restart N` (from what N persisted), `inject A->B MESSAGE` (a message
//!   in the printed form, e.g. a hostile one).
//! - `status [N ...]` (role, term, log, commit, applied, lease), `log N`
//!   (what N's disk holds).

#[path = "interaction/cluster.rs"]
mod cluster;
#[path = "interaction/print.rs"]
mod print;

use std::path::{Path, PathBuf};

use cluster::Cluster;

/// Replays a transcript; returns the text it should have (commands and
/// comments as they are, each command's output as the core produced it).
fn replay(path: &Path, text: &str) -> String {
    let mut cluster = Cluster::new();
    let mut out = String::new();
    let mut in_output = false;
    for (n, line) in text.lines().enumerate() {
        if let Some(cmd) = line.strip_prefix("> ") {
            out.push_str(line);
            out.push('\n');
            let produced = cluster
                .run(cmd)
                .unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), n + 1));
            for l in produced {
                out.push_str(&l);
                out.push('\n');
            }
            in_output = true;
        } else if line.is_empty() || line.starts_with('#') {
            in_output = false;
            out.push_str(line);
            out.push('\n');
        } else if !in_output {
            panic!(
                "{}:{}: output without a command before it",
                path.display(),
                n + 1
            );
        }
    }
    out
}

/// A line diff (longest common subsequence): `-` expected, `+` actual,
/// with two lines of context around each change.
fn diff(expected: &str, actual: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut lines = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            lines.push((' ', a[i], i + 1));
            (i, j) = (i + 1, j + 1);
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            lines.push(('-', a[i], i + 1));
            i += 1;
        } else {
            lines.push(('+', b[j], i + 1));
            j += 1;
        }
    }
    let near_change = |k: usize| {
        lines[k.saturating_sub(2)..(k + 3).min(lines.len())]
            .iter()
            .any(|l| l.0 != ' ')
    };
    let mut out = String::new();
    let mut skipped = true;
    for (k, (tag, text, line)) in lines.iter().enumerate() {
        if near_change(k) {
            if skipped {
                out.push_str(&format!("@@ line {line}\n"));
            }
            out.push_str(&format!("{tag} {text}\n"));
            skipped = false;
        } else {
            skipped = true;
        }
    }
    out
}

fn transcripts() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interaction");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    files
}

#[test]
fn golden_transcripts() {
    let rewrite = std::env::var_os("RAFTKV_REWRITE").is_some_and(|v| v == "1");
    let files = transcripts();
    assert!(files.len() >= 8, "transcripts missing: {files:?}");
    let mut failed = Vec::new();
    for path in &files {
        let expected = std::fs::read_to_string(path).expect("readable transcript");
        let actual = replay(path, &expected);
        if actual == expected {
            continue;
        }
        if rewrite {
            std::fs::write(path, &actual).expect("writable transcript");
            println!("rewrote {}", path.display());
        } else {
            failed.push(format!(
                "--- {} (expected -, actual +)\n{}",
                path.display(),
                diff(&expected, &actual)
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "transcripts differ (RAFTKV_REWRITE=1 rewrites them):\n{}",
        failed.join("\n")
    );
}

#[test]
fn the_diff_shows_what_changed() {
    let d = diff("a\nb\nc\nd\ne\nf\ng\n", "a\nb\nc\nX\ne\nf\ng\n");
    assert_eq!(d, "@@ line 2\n  b\n  c\n- d\n+ X\n  e\n  f\n");
}

#[test]
fn a_replay_keeps_commands_and_comments_and_replaces_output() {
    let text = "# c\n> nodes 1\nstale output\n\n> status 1\n";
    let got = replay(Path::new("inline"), text);
    assert_eq!(
        got,
        "# c\n> nodes 1\n\n> status 1\nn1: follower term=1 leader=unknown last=1/1 commit=1 applied=0 lease=none\n"
    );
}
