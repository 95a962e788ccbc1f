//! `raftctl snapshot save|restore|status`: backups of a cluster and new
//! clusters restored from them (docs/operations.md, "Backup and restore").
//!
//! `save` streams a consistent snapshot from the leader into a file
//! (`file`), `restore` seeds one new member's data directory from it
//! (`restore`), `status` verifies one and says what it holds.

pub mod file;
pub mod restore;
pub mod retention;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::cli::Output;
use super::exit::{CtlError, Exit};
use super::output::print_structured;
use crate::client::{Client, ClientError, SnapshotPiece};
use crate::kv::{Limits, StateMachine};
use file::{Backup, FileError, Writer};
use restore::{Plan, RestoreError};

/// How long a save waits for each message of the leader's stream (the
/// first comes once the leader has encoded its state: about a second per
/// million keys).
pub const STALL_LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Stream a consistent snapshot from the leader into FILE (or a file
    /// named by what it holds in --dir), with its index, term, cluster id
    /// and checksum. Written to FILE.tmp, fsynced, then renamed: a failed
    /// save leaves no FILE. Progress on stderr when it is a terminal.
    Save(SaveArgs),
    /// Seed the data directory of one member of a NEW cluster from FILE
    /// (new cluster id; same keys, sessions and TTLs). Run once per
    /// member; refuses a corrupt or truncated FILE and a non-empty
    /// --data-dir, changing nothing.
    Restore(RestoreArgs),
    /// Verify FILE (checksums and the state it holds) and print its index,
    /// term, cluster id and key count.
    Status { file: PathBuf },
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// The file to write.
    #[arg(required_unless_present = "dir", conflicts_with = "dir")]
    pub file: Option<PathBuf>,
    /// Write DIR/raftkv-<cluster>-<UTC time>-<index>.snap instead (the
    /// directory must exist).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// After a successful save into --dir, delete the oldest files of that
    /// naming pattern beyond the newest N (other files are never touched;
    /// a failed save deletes nothing).
    #[arg(long, requires = "dir", value_parser = clap::value_parser!(u64).range(1..))]
    pub keep: Option<u64>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    pub file: PathBuf,
    /// The member's data directory to create (missing or empty). For
    /// `raftctl local --data-dir DIR`: DIR/node-ID.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// This member's node id.
    #[arg(long, required_unless_present = "member_from_pod_name")]
    pub member: Option<u64>,
    /// Take the node id from a StatefulSet pod name, NAME-<ordinal> (the
    /// chart passes its own pod's name: there is no shell to cut it).
    #[arg(long, value_name = "POD", conflicts_with = "member")]
    pub member_from_pod_name: Option<String>,
    /// When --data-dir already holds a node (an identity), change nothing
    /// and exit 0: the chart's restore init container runs before every
    /// start of a pod, and restores only before the first.
    #[arg(long)]
    pub skip_if_initialized: bool,
    /// When the member is not one of the new cluster's voters, change
    /// nothing and exit 0 (a pod added by a later scale-up joins the
    /// restored cluster instead of being seeded).
    #[arg(long)]
    pub skip_non_voters: bool,
    /// The new cluster's voters, comma separated (default: the voters when
    /// the backup was taken). Give every member the same list.
    #[arg(long, value_delimiter = ',')]
    pub voters: Vec<u64>,
    /// The new cluster's id (default: derived from the backup and the
    /// voters, so every member's restore agrees).
    #[arg(long)]
    pub cluster_id: Option<String>,
    /// Restore with auth turned off (users and roles kept): how to get back
    /// in after losing root's password (docs/security.md). Give it to every
    /// member's restore, or their states differ.
    #[arg(long)]
    pub disable_auth: bool,
}

/// Runs one `raftctl snapshot` command; `client` connects for `save`.
pub async fn command(
    command: &SnapshotCommand,
    client: impl FnOnce() -> Result<Client, ClientError>,
    output: Output,
) -> Result<(), CtlError> {
    match command {
        SnapshotCommand::Save(args) => save(&client()?, output, args).await,
        SnapshotCommand::Restore(args) => restore(args, output),
        SnapshotCommand::Status { file } => status(file, output),
    }
}

/// What `save` and `status` print.
#[derive(Debug, Serialize)]
struct Summary {
    file: PathBuf,
    cluster_id: String,
    index: u64,
    term: u64,
    voters: Vec<u64>,
    leader: u64,
    keys: u64,
    cluster_time_ms: u64,
    taken_unix_ms: u64,
    version: String,
    data_bytes: u64,
    file_bytes: u64,
    sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    seconds: Option<f64>,
    /// Older backups `--keep` deleted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    deleted: Vec<PathBuf>,
}

impl Summary {
    fn new(
        file: &Path,
        header: &crate::pb::SnapshotHeader,
        file_bytes: u64,
        sha256: String,
    ) -> Self {
        Summary {
            file: file.to_path_buf(),
            cluster_id: header.cluster_id.clone(),
            index: header.index,
            term: header.term,
            voters: header.voters.clone(),
            leader: header.leader,
            keys: header.keys,
            cluster_time_ms: header.cluster_time_ms,
            taken_unix_ms: header.taken_unix_ms,
            version: header.version.clone(),
            data_bytes: header.data_bytes,
            file_bytes,
            sha256,
            seconds: None,
            deleted: Vec::new(),
        }
    }

    fn lines(&self) -> String {
        let voters: Vec<String> = self.voters.iter().map(u64::to_string).collect();
        let rows = [
            ("file", self.file.display().to_string()),
            ("cluster", self.cluster_id.clone()),
            ("index", self.index.to_string()),
            ("term", self.term.to_string()),
            ("voters", voters.join(",")),
            (
                "taken by",
                format!("node {} (raftkv {})", self.leader, self.version),
            ),
            ("keys", self.keys.to_string()),
            (
                "size",
                format!("{} bytes ({} of state)", self.file_bytes, self.data_bytes),
            ),
            ("sha256", self.sha256.clone()),
        ];
        rows.iter().map(|(k, v)| format!("{k:<10}{v}\n")).collect()
    }
}

fn file_error(e: FileError) -> CtlError {
    let exit = if e.is_bad_data() {
        Exit::BadInput
    } else {
        Exit::Error
    };
    CtlError::new(exit, e.to_string())
}

async fn save(client: &Client, output: Output, args: &SaveArgs) -> Result<(), CtlError> {
    match (&args.file, &args.dir) {
        (Some(path), _) if path.is_dir() || file::temporary_path(path).is_none() => {
            return Err(CtlError::new(
                Exit::BadInput,
                format!("{} is not a file name to save to", path.display()),
            ));
        }
        (_, Some(dir)) if !dir.is_dir() => {
            return Err(CtlError::new(
                Exit::BadInput,
                format!("--dir {} is not a directory", dir.display()),
            ));
        }
        _ => {}
    }
    let started = Instant::now();
    let progress = Progress::start();
    let mut download = client.snapshot(STALL_LIMIT).await?;
    let header = download.header.clone();
    let path = match (&args.file, &args.dir) {
        (Some(path), _) => path.clone(),
        (None, Some(dir)) => dir.join(retention::file_name(
            &header.cluster_id,
            header.taken_unix_ms,
            header.index,
        )),
        (None, None) => unreachable!("clap requires FILE or --dir"),
    };
    let path = path.as_path();
    if args.dir.is_some() && path.exists() {
        return Err(CtlError::new(
            Exit::Error,
            format!(
                "{} exists already (a save of the same index in the same second); nothing was changed",
                path.display()
            ),
        ));
    }
    let mut writer = Writer::create(path, &header).map_err(file_error)?;
    progress.receiving(header.data_bytes);
    let written = loop {
        match download.next().await? {
            SnapshotPiece::Data(data) => {
                writer.data(&data).map_err(file_error)?;
                progress.add(data.len());
            }
            SnapshotPiece::Trailer(trailer) => {
                break writer.finish(&trailer).map_err(file_error)?;
            }
        }
    };
    progress.done();
    let seconds = started.elapsed().as_secs_f64();
    let mut summary = Summary::new(path, &header, written.file_bytes, written.sha256);
    summary.seconds = Some(seconds);
    if let (Some(dir), Some(keep)) = (&args.dir, args.keep) {
        let keep = usize::try_from(keep).unwrap_or(usize::MAX);
        summary.deleted = retention::prune(dir, keep).map_err(|e| {
            CtlError::error(format!(
                "saved {}, but could not delete older backups in {} (--keep {keep}): {e}",
                path.display(),
                dir.display()
            ))
        })?;
    }
    match output {
        Output::Table => {
            let rate = written.file_bytes as f64 / 1e6 / seconds.max(1e-9);
            print!("{}", summary.lines());
            println!("saved in {seconds:.2}s ({rate:.1} MB/s)");
            for old in &summary.deleted {
                println!("deleted {} (--keep)", old.display());
            }
            Ok(())
        }
        other => print_structured(other, &summary),
    }
}

/// Reads and verifies `path`, the state it holds included.
fn verified(path: &Path) -> Result<Backup, CtlError> {
    let backup = file::read(path).map_err(file_error)?;
    StateMachine::restore(Limits::default(), &backup.data).map_err(|e| {
        file_error(FileError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("its state does not decode: {}", e.message),
        })
    })?;
    Ok(backup)
}

fn status(path: &Path, output: Output) -> Result<(), CtlError> {
    let backup = verified(path)?;
    let summary = Summary::new(path, &backup.header, backup.file_bytes, backup.sha256);
    match output {
        Output::Table => {
            print!("{}", summary.lines());
            println!("verified: checksums match and the state decodes");
            Ok(())
        }
        other => print_structured(other, &summary),
    }
}

fn restore(args: &RestoreArgs, output: Output) -> Result<(), CtlError> {
    let member = match (&args.member, &args.member_from_pod_name) {
        (Some(id), _) => *id,
        (None, Some(pod)) => restore::ordinal_of(pod).ok_or_else(|| {
            CtlError::new(
                Exit::BadInput,
                format!(
                    "--member-from-pod-name {pod:?} is not a StatefulSet pod name (NAME-<ordinal>)"
                ),
            )
        })?,
        (None, None) => unreachable!("clap requires --member or --member-from-pod-name"),
    };
    let skipped = |message: String| match output {
        Output::Table => {
            println!("{message}");
            Ok(())
        }
        other => print_structured(
            other,
            &serde_json::json!({"data_dir": args.data_dir, "member": member, "skipped": message}),
        ),
    };
    if args.skip_if_initialized && restore::initialized(&args.data_dir) {
        return skipped(format!(
            "{} already holds a node's data: not restored (--skip-if-initialized)",
            args.data_dir.display()
        ));
    }
    let backup = file::read(&args.file).map_err(file_error)?;
    let voters = if args.voters.is_empty() {
        &backup.header.voters
    } else {
        &args.voters
    };
    if args.skip_non_voters && !voters.contains(&member) {
        return skipped(format!(
            "node {member} is not one of the new cluster's voters: not restored \
             (--skip-non-voters; it joins the restored cluster)"
        ));
    }
    let plan = Plan {
        data_dir: &args.data_dir,
        member,
        voters: &args.voters,
        cluster_id: args.cluster_id.as_deref(),
        disable_auth: args.disable_auth,
    };
    let restored = restore::restore(&backup, &plan).map_err(|e| {
        let exit = match &e {
            RestoreError::File(f) if !f.is_bad_data() => Exit::Error,
            RestoreError::File(_) | RestoreError::BadInput(_) | RestoreError::DataDir { .. } => {
                Exit::BadInput
            }
            RestoreError::Storage { .. } | RestoreError::Io { .. } => Exit::Error,
        };
        let message = match e {
            RestoreError::File(FileError::Corrupt { detail, .. }) => {
                format!(
                    "{} is corrupt: {detail}; nothing was changed",
                    args.file.display()
                )
            }
            other => other.to_string(),
        };
        CtlError::new(exit, message)
    })?;
    match output {
        Output::Table => {
            let voters: Vec<String> = restored.voters.iter().map(u64::to_string).collect();
            println!(
                "restored node {} of new cluster {} (voters {}) into {}: index {}, term {}, {} keys \
                 from cluster {}",
                restored.member,
                restored.cluster_id,
                voters.join(","),
                restored.data_dir.display(),
                restored.index,
                restored.term,
                restored.keys,
                restored.from_cluster_id
            );
            Ok(())
        }
        other => print_structured(other, &restored),
    }
}

/// A save's progress on stderr, drawn only when stderr is a terminal: a
/// spinner while the leader encodes, then a bar of the bytes received.
struct Progress {
    bar: ProgressBar,
}

impl Progress {
    fn start() -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress {
                bar: ProgressBar::hidden(),
            };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message("waiting for the leader's snapshot");
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress { bar }
    }

    fn receiving(&self, total: u64) {
        let template = "saving [{bar:30}] {binary_bytes}/{binary_total_bytes} \
                        {binary_bytes_per_sec} eta {eta}";
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        self.bar.set_style(style);
        self.bar.set_length(total);
    }

    fn add(&self, bytes: usize) {
        self.bar.inc(bytes as u64);
    }

    fn done(&self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // A failed save leaves no half-drawn bar before its error line.
        if !self.bar.is_finished() {
            self.bar.finish_and_clear();
        }
    }
}
