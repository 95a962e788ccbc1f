//! `raftctl snapshot save --dir DIR --keep N`: backups named by what they
//! hold, in a directory that keeps the newest N (docs/operations.md,
//! "Backup with the chart").
//!
//! A backup's name is `raftkv-<cluster>-<UTC time taken>-<index>.snap`
//! (the cluster id with anything but letters, digits, `.`, `_` and `-` as
//! `_`). Retention looks only at names of exactly that form, whatever
//! else the directory holds, and runs only after a save succeeded.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

/// The file name of a backup of `cluster_id` at `index`, taken at
/// `taken_unix_ms` (UTC, to the second).
pub fn file_name(cluster_id: &str, taken_unix_ms: u64, index: u64) -> String {
    let cluster: String = cluster_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let seconds = i64::try_from(taken_unix_ms / 1000).unwrap_or(i64::MAX);
    let t = OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let when = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    format!("raftkv-{cluster}-{when}-{index}.snap")
}

/// What a backup's name says, for ordering: (time taken, index).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Stamp {
    when: String,
    index: u64,
}

/// The stamp of a name of the form [`file_name`] makes, else `None`.
fn parse(name: &str) -> Option<Stamp> {
    let rest = name.strip_prefix("raftkv-")?.strip_suffix(".snap")?;
    let (rest, index) = rest.rsplit_once('-')?;
    if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let index: u64 = index.parse().ok()?;
    let (cluster, when) = rest.rsplit_once('-')?;
    if cluster.is_empty()
        || !cluster
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return None;
    }
    let b = when.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() != 16 || !digits(0..8) || b[8] != b'T' || !digits(9..15) || b[15] != b'Z' {
        return None;
    }
    Some(Stamp {
        when: when.to_string(),
        index,
    })
}

/// Deletes the oldest backups in `dir` beyond the newest `keep` (by the
/// time and index in their names); other files are never touched. Returns
/// the files deleted, oldest first.
pub fn prune(dir: &Path, keep: usize) -> io::Result<Vec<PathBuf>> {
    let mut backups: Vec<(Stamp, PathBuf)> = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if let Some(stamp) = parse(&name) {
            if entry.file_type()?.is_file() {
                backups.push((stamp, entry.path()));
            }
        }
    }
    backups.sort();
    let excess = backups.len().saturating_sub(keep);
    let mut deleted = Vec::new();
    for (_, path) in backups.into_iter().take(excess) {
        fs::remove_file(&path)?;
        deleted.push(path);
    }
    if !deleted.is_empty() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_cluster_time_and_index_and_parse_back() {
        // 2026-12-07 14:47:45.678 UTC
        let name = file_name("raftkv-3f2a", 1_796_654_865_678, 1234);
        assert_eq!(name, "raftkv-raftkv-3f2a-20261207T144745Z-1234.snap");
        assert_eq!(
            parse(&name),
            Some(Stamp {
                when: "20261207T144745Z".into(),
                index: 1234
            })
        );
        let odd = file_name("a b/c", 0, 1);
        assert_eq!(odd, "raftkv-a_b_c-19700101T000000Z-1.snap");
        assert!(parse(&odd).is_some());
    }

    #[test]
    fn only_names_of_the_pattern_count() {
        for other in [
            "raftkv-x-20261207T144745Z-12.snap.tmp",
            "raftkv-x-20261207T144745Z-.snap",
            "raftkv-x-20261207T144745Z-1a.snap",
            "raftkv--20261207T144745Z-1.snap",
            "raftkv-x-2026120T144745Z-1.snap",
            "raftkv-x-20261207 144745Z-1.snap",
            "raftkv-x-20261207T144745-1.snap",
            "backup-x-20261207T144745Z-1.snap",
            "raftkv-x-20261207T144745Z-1.backup",
            "my.snap",
            "lost+found",
        ] {
            assert_eq!(parse(other), None, "{other}");
        }
    }

    #[test]
    fn prune_keeps_the_newest_and_never_touches_other_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let base = 1_796_654_865_000u64;
        let mut names = Vec::new();
        // Out of order on purpose; two in the same second (index decides).
        for (i, (dt, index)) in [(60, 10), (0, 5), (180, 30), (120, 20), (120, 21)]
            .into_iter()
            .enumerate()
        {
            let cluster = if i == 1 { "old-cluster" } else { "raftkv-new" };
            let name = file_name(cluster, base + dt * 1000, index);
            fs::write(dir.join(&name), b"x").unwrap();
            names.push(name);
        }
        let others = [
            "notes.txt",
            "raftkv-new-20261207T144745Z-1.snap.tmp",
            "hand-made.snap",
        ];
        for o in others {
            fs::write(dir.join(o), b"keep").unwrap();
        }
        fs::create_dir(dir.join("raftkv-d-20000101T000000Z-1.snap")).unwrap();

        let deleted = prune(dir, 3).unwrap();
        let deleted: Vec<String> = deleted
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
            .collect();
        assert_eq!(deleted, [names[1].clone(), names[0].clone()]);
        let mut left: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_str().unwrap().to_string())
            .collect();
        left.sort();
        let mut want: Vec<String> = others.iter().map(|s| s.to_string()).collect();
        want.extend([names[2].clone(), names[3].clone(), names[4].clone()]);
        want.push("raftkv-d-20000101T000000Z-1.snap".into());
        want.sort();
        assert_eq!(left, want);

        assert!(prune(dir, 3).unwrap().is_empty(), "nothing beyond 3");
        assert_eq!(prune(dir, 1).unwrap().len(), 2);
        assert!(dir.join(&names[2]).exists(), "the newest stays");
    }
}
