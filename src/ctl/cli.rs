//! raftctl's command line (clap derive): global flags and subcommands.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::duration::{parse_duration, parse_timeout};

/// The local cluster's client endpoints (`raftctl local` with defaults).
pub const DEFAULT_ENDPOINTS: &str = "127.0.0.1:7379,127.0.0.1:7389,127.0.0.1:7399";

const EXIT_CODES: &str = "\
Exit codes:
  0    success
  1    error (key not found, CAS not swapped, command refused, ...)
  2    unreachable: no endpoint answered
  3    bad input (empty key, key > 4 KiB, value > 1 MiB, a value that does
       not parse: a number, a duration without unit, -o, --endpoints)
  4    no leader, or the cluster is unhealthy
  128  usage error (unknown subcommand or flag, missing argument)

Endpoints come from --endpoints, else RAFTKV_ENDPOINTS, else the local
cluster's defaults (raftctl local).";

/// raftctl: read and write keys, inspect and change a raftkv cluster.
#[derive(Debug, Parser)]
#[command(name = "raftctl", version, after_help = EXIT_CODES, arg_required_else_help = true)]
pub struct Cli {
    /// Client endpoints, HOST:PORT, comma separated.
    #[arg(
        long,
        global = true,
        env = "RAFTKV_ENDPOINTS",
        value_delimiter = ',',
        default_value = DEFAULT_ENDPOINTS,
        value_parser = parse_endpoint
    )]
    pub endpoints: Vec<String>,

    /// Output format: table (values raw, tables aligned), json or yaml.
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,

    /// Overall deadline of one operation, retries included (e.g. 500ms, 10s,
    /// 1m; a unit is required).
    #[arg(long, global = true, default_value = "10s", value_parser = parse_timeout)]
    pub timeout: Duration,

    /// Give up after this long if no endpoint accepts a connection (every
    /// one refused or silent); retries go on only while some endpoint answers.
    #[arg(long, global = true, default_value = "1s", value_parser = parse_timeout)]
    pub dial_timeout: Duration,

    /// CA certificate (PEM) the nodes' certificates must chain to: TLS to
    /// the client port.
    #[arg(
        long,
        id = "tls_cacert",
        value_name = "FILE",
        global = true,
        env = "RAFTKV_CACERT"
    )]
    pub cacert: Option<PathBuf>,

    /// Client certificate (PEM), for nodes that require one (with --key).
    #[arg(
        long,
        id = "tls_cert",
        value_name = "FILE",
        global = true,
        env = "RAFTKV_CERT"
    )]
    pub cert: Option<PathBuf>,

    /// Private key (PEM) of --cert.
    #[arg(
        long,
        id = "tls_key",
        value_name = "FILE",
        global = true,
        env = "RAFTKV_KEY"
    )]
    pub key: Option<PathBuf>,

    /// Authenticate as NAME (password after ':', else RAFTKV_PASSWORD, else
    /// asked on the terminal) when the cluster has auth enabled (docs/security.md).
    #[arg(
        long,
        value_name = "NAME[:PASSWORD]",
        global = true,
        env = "RAFTKV_USER",
        hide_env_values = true
    )]
    pub user: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// TLS to the client port from --cacert, --cert and --key (None:
    /// plaintext). Half a setting is refused rather than ignored.
    pub fn client_tls(&self) -> Result<Option<crate::tls::ClientTls>, String> {
        let identity = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            (None, None) => None,
            _ => return Err("--cert and --key go together".into()),
        };
        let Some(ca) = &self.cacert else {
            return match identity {
                Some(_) => {
                    Err("--cert and --key need --cacert (the CA of the nodes' certificates)".into())
                }
                None => Ok(None),
            };
        };
        let files = crate::tls::ClientFiles {
            ca: ca.clone(),
            identity,
        };
        crate::tls::ClientTls::new(files)
            .map(Some)
            .map_err(|e| format!("TLS: {e}"))
    }
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write VALUE under KEY (clears any TTL); prints OK. Without VALUE,
    /// the value is read from stdin (for binary or large values).
    Set {
        key: String,
        #[arg(allow_negative_numbers = true)]
        value: Option<String>,
    },
    /// Print the value of KEY raw; a missing key exits 1. With --prefix,
    /// every key starting with PREFIX and its value (as `keys` pages them).
    Get(GetArgs),
    /// List the keys starting with PREFIX (all keys without one), in byte
    /// order, with their count.
    Keys(KeysArgs),
    /// Delete KEY; prints 1 if it existed, else 0.
    Del { key: String },
    /// Add 1 to the integer at KEY (missing counts as 0); prints the new value.
    Incr { key: String },
    /// Delete KEY after SECONDS (0 to the limit, a decimal integer); prints
    /// 1, or 0 if there is no such key.
    Expire {
        key: String,
        #[arg(allow_negative_numbers = true, value_parser = parse_ttl_seconds)]
        seconds: u64,
    },
    /// Print the seconds KEY has left, or "none"; a missing key exits 1.
    Ttl { key: String },
    /// Set KEY to NEW if its value is EXPECTED; prints OK, or exits 1 if not swapped.
    Cas(CasArgs),
    /// Show every endpoint: role, term, leader, lease, commit, applied, lag.
    /// With --platform kube: every pod (phase, ready, restarts, node) beside
    /// its node, reached through port-forwards.
    Status(StatusArgs),
    /// Compare the members' states: propose a state check (each member
    /// hashes its whole state at that log entry) and print every member's
    /// hash there. Exits 1 if two differ, 4 if a member cannot be compared.
    Check {
        /// How long to wait for members to compute and report their hash.
        #[arg(long, default_value = "10s", value_parser = parse_timeout)]
        wait: Duration,
    },
    /// List the members as the leader knows them.
    Members,
    /// Add or remove a member.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Ask the leader to hand leadership to node ID.
    TransferLeader { id: u64 },
    /// Users: add, delete, passwd, grant, revoke, list, get (docs/security.md).
    #[command(subcommand)]
    User(super::auth::UserCommand),
    /// Roles and their per-prefix permissions.
    #[command(subcommand)]
    Role(super::auth::RoleCommand),
    /// Turn auth on or off, or show whether it is on.
    #[command(subcommand)]
    Auth(super::auth::AuthCommand),
    /// Run a local cluster of raftkv processes on 127.0.0.1 until Ctrl-C.
    Local(LocalArgs),
    /// Print a node's data directory (identity, hard state, snapshot, log
    /// with each command decoded); read-only. Refused while a node has the
    /// directory open.
    Dump {
        data_dir: PathBuf,
        /// Read a directory a running node holds (the dump may be torn).
        #[arg(long)]
        force: bool,
    },
    /// Load-test the cluster: many clients, sequential requests, latency percentiles.
    Bench(BenchArgs),
    /// Delete one pod (container, process) of the cluster: the fault-test
    /// primitive. Its controller starts it again with the same name and data.
    DeletePod(DeletePodArgs),
    /// Delete pods on a schedule while a checked workload runs; report
    /// unavailability, lost writes, linearizability and INCR exactly-once.
    /// Exits 1 if any acknowledged write was lost or the history is not
    /// linearizable.
    Chaos(ChaosArgs),
    /// Print the Kubernetes objects of a cluster as YAML (what deploy applies).
    Manifests(ManifestsArgs),
    /// Create or update the cluster on Kubernetes (server-side apply), then
    /// wait until every pod is ready and a leader holds its lease.
    Deploy(DeployArgs),
    /// Change the number of members in a safe order (kube, docker or local):
    /// new pods join as learners and become voters one at a time; removed
    /// members leave the membership before their pods stop. Refuses a change
    /// that would lose quorum, changing nothing.
    Scale(ScaleArgs),
    /// Back up the cluster to a file, seed a new cluster's data directories
    /// from one, or verify one (docs/operations.md, "Backup and restore").
    #[command(subcommand)]
    Snapshot(super::snapshot::SnapshotCommand),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Show the pods of this platform too (kube); without it, the endpoints.
    #[arg(long, value_enum, env = "RAFTKV_PLATFORM")]
    pub platform: Option<PlatformKind>,
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Refresh every --interval until Ctrl-C (in place on a terminal).
    #[arg(short, long)]
    pub watch: bool,
    /// Time between two refreshes of --watch.
    #[arg(long, default_value = "2s", value_parser = parse_timeout)]
    pub interval: Duration,
    /// A member more entries behind the leader's commit index than this
    /// makes the cluster unhealthy (exit 4).
    #[arg(long, default_value_t = 1000)]
    pub max_lag: u64,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// The key (not given with --prefix).
    #[arg(required_unless_present = "prefix", conflicts_with = "prefix")]
    pub key: Option<String>,
    /// Print every key starting with PREFIX and its value ("" for all keys).
    #[arg(long)]
    pub prefix: Option<String>,
    /// With --prefix: at most this many keys (0: all).
    #[arg(long, default_value_t = 0, requires = "prefix")]
    pub limit: u64,
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    /// Only keys starting with this (default: every key).
    #[arg(default_value = "")]
    pub prefix: String,
    /// At most this many keys (0: all).
    #[arg(long, default_value_t = 0)]
    pub limit: u64,
}

/// The cluster's shape: what `manifests` prints and `deploy` applies.
#[derive(Debug, Clone, Args)]
pub struct ValuesArgs {
    /// Founding members (1, 3 or 5); an existing cluster keeps its count.
    #[arg(long, value_parser = parse_replicas)]
    pub replicas: Option<i32>,
    /// The raftkv container image.
    #[arg(long, default_value = "raftkv:latest")]
    pub image: String,
    /// Size of each pod's volume claim `data`.
    #[arg(long, default_value = "1Gi")]
    pub storage_size: String,
    /// StorageClass of the volume claims (default: the cluster's default class).
    #[arg(long)]
    pub storage_class: Option<String>,
    /// TLS on the client and peer ports with Secret NAME of the namespace
    /// (ca.crt, tls.crt, tls.key; its certificate must name every member:
    /// docs/kubernetes.md, "TLS"), mounted read-only at /etc/raftkv-tls.
    #[arg(long, value_name = "NAME", value_parser = parse_secret_name)]
    pub tls_secret: Option<String>,
    /// With --tls-secret: whether clients must present a certificate signed
    /// by the Secret's ca.crt [default: true].
    #[arg(long, value_name = "BOOL", requires = "tls_secret")]
    pub tls_client_cert_auth: Option<bool>,
}

#[derive(Debug, Args)]
pub struct ManifestsArgs {
    #[command(flatten)]
    pub values: ValuesArgs,
    /// Namespace written into the objects.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// StatefulSet name.
    #[arg(long, default_value = "raftkv")]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub values: ValuesArgs,
    /// Where to deploy: kube (server-side apply), docker (network, volumes
    /// and containers NAME-N). local is refused: run `raftctl local`.
    #[arg(long, value_enum, env = "RAFTKV_PLATFORM", default_value_t = PlatformKind::Kube)]
    pub platform: PlatformKind,
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Apply and return without waiting for the pods.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for every pod ready and a leader.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub wait_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// The new number of members (pods NAME-0 .. NAME-(N-1)).
    #[arg(allow_negative_numbers = true)]
    pub replicas: i64,
    /// Delete the data volume of each removed member (docker: its named
    /// volume, local: its directory, kube: its PersistentVolumeClaim), and
    /// on scale-up, data a removed member left on a new ordinal. Without
    /// it, removed members' data stays and a later scale-up onto it is
    /// refused.
    #[arg(long)]
    pub delete_data: bool,
    /// How long each new node may take to join and become a voter.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub join_timeout: Duration,
    #[command(flatten)]
    pub platform: PlatformArgs,
}

/// Where the cluster runs, for the commands that act on its pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlatformKind {
    /// Kubernetes, through the API server of the kubeconfig's context.
    Kube,
    /// Docker containers NAME-0, NAME-1, ... (the docker CLI).
    Docker,
    /// The processes of a `raftctl local` running on --data-dir.
    Local,
}

/// Selecting the cluster's platform, kubectl-style for Kubernetes.
#[derive(Debug, Clone, Args)]
pub struct PlatformArgs {
    /// The platform the cluster runs on.
    #[arg(long, value_enum, env = "RAFTKV_PLATFORM", default_value_t = PlatformKind::Kube)]
    pub platform: PlatformKind,
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Data directory of the `raftctl local` cluster (local).
    #[arg(long, default_value = "./raftkv-data")]
    pub data_dir: PathBuf,
}

/// Where the cluster is on Kubernetes, as kubectl's flags say it.
#[derive(Debug, Clone, Args)]
pub struct KubeArgs {
    /// Kubernetes namespace (default: the context's namespace, else "default").
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Kubeconfig context (default: the current context).
    #[arg(long)]
    pub context: Option<String>,
    /// Kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// StatefulSet name (kube) or container name prefix (docker).
    #[arg(long, default_value = "raftkv")]
    pub name: String,
    /// Label selector of the StatefulSet's pods (kube; default:
    /// app.kubernetes.io/name=raftkv,app.kubernetes.io/instance=NAME).
    #[arg(long)]
    pub selector: Option<String>,
    /// The members' client port (kube).
    #[arg(long, default_value_t = crate::ctl::platform::pod::CLIENT_PORT as u16)]
    pub client_port: u16,
}

#[derive(Debug, Args)]
pub struct DeletePodArgs {
    /// The pod to delete (raftkv-N on kube and docker, node-N on local).
    #[arg(required_unless_present_any = ["leader", "random"], conflicts_with_all = ["leader", "random"])]
    pub pod: Option<String>,
    /// Delete the current leader's pod.
    #[arg(long, conflicts_with = "random")]
    pub leader: bool,
    /// Delete a pod chosen at random.
    #[arg(long)]
    pub random: bool,
    /// 0 (forced: SIGKILL at once), default (SIGTERM, then the pod's grace
    /// period), or a grace period such as 5s.
    #[arg(long, default_value = "default", value_parser = crate::ctl::platform::Grace::parse)]
    pub grace: crate::ctl::platform::Grace,
    #[command(flatten)]
    pub platform: PlatformArgs,
}

#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// How long the workload runs.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub duration: Duration,
    /// Time between two faults.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Which pod each fault hits.
    #[arg(long, value_enum, default_value_t = KillTarget::Leader)]
    pub kill: KillTarget,
    /// The faults, comma separated, injected in turn, or `all`: kill
    /// (delete the pod; see --grace; every platform); pause[=DURATION]
    /// (freeze its process, 1s by default; local, docker);
    /// partition=KIND[:LENGTH] (KIND: isolate-leader, leader-minority,
    /// one-way-out, one-way-in, bridge; 3s by default; local only);
    /// slow=DELAY[~JITTER][:LENGTH] (the pod's links, 5s by default; local
    /// only); skew=RATE[@leader|@follower][:LENGTH] (restart the pod on a
    /// clock at RATE of real time with libfaketime, isolate the leader
    /// meanwhile, 8s by default; local only); member=CHANGE (CHANGE:
    /// add-learner, remove-leader, remove-follower, transfer-lagging,
    /// rolling-restart; transfer-lagging on local and docker only);
    /// disk=fsync|full[@leader|@follower][:LENGTH] (restart the pod where
    /// its disk can fail, then fail every fsync with libfiu's fiu-run, or
    /// fill its data's small tmpfs (root): the node must stop; restored
    /// after LENGTH, 3s by default; local only: docker and kube cannot
    /// reach a pod's process or volume). See docs/testing.md, "Faults".
    #[arg(long, alias = "fault", default_value = "kill")]
    pub faults: crate::ctl::fault::Faults,
    /// forced, graceful, alternate (forced then graceful, in turn), or a
    /// grace period such as 5s.
    #[arg(long, default_value = "forced", value_parser = crate::ctl::chaos::GracePlan::parse)]
    pub grace: crate::ctl::chaos::GracePlan,
    /// Concurrent workload clients.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Registers the workload writes (plus one INCR-only counter).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub keys: u16,
    /// Pause between one client's operations (bounds the history to check).
    #[arg(long, default_value = "10ms", value_parser = parse_duration)]
    pub pause: Duration,
    #[command(flatten)]
    pub platform: PlatformArgs,
}

/// Which pod `chaos` deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KillTarget {
    Leader,
    Random,
}

#[derive(Debug, Args)]
pub struct CasArgs {
    pub key: String,
    /// The value KEY must have; with --absent, this is NEW.
    #[arg(value_name = "EXPECTED", allow_negative_numbers = true)]
    pub expected_or_new: String,
    /// The value to write (not given with --absent).
    #[arg(
        required_unless_present = "absent",
        conflicts_with = "absent",
        allow_negative_numbers = true
    )]
    pub new: Option<String>,
    /// Expect no key: `cas KEY --absent NEW` writes only if KEY does not exist.
    #[arg(long)]
    pub absent: bool,
}

impl CasArgs {
    /// (expected, new); clap guarantees `new` is given exactly when not `absent`.
    pub fn values(&self) -> (Option<&str>, &str) {
        match &self.new {
            Some(new) => (Some(&self.expected_or_new), new),
            None => (None, &self.expected_or_new),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Add node ID: as a learner, then promoted to voter once it has caught up
    /// (waits up to 2 minutes); with --learner, stop at the learner step.
    Add {
        id: u64,
        /// Its peer address, HOST:PORT.
        #[arg(long)]
        peer_addr: String,
        /// Its client address (default: the peer host, port − 1).
        #[arg(long)]
        client_addr: Option<String>,
        /// Keep it a non-voting learner.
        #[arg(long)]
        learner: bool,
    },
    /// Remove node ID.
    Remove { id: u64 },
}

#[derive(Debug, Args)]
pub struct LocalArgs {
    /// Number of nodes: 1, 3 or 5 (an odd count; the default endpoints cover 3).
    #[arg(long, default_value_t = 3, value_parser = parse_node_count)]
    pub nodes: u32,
    /// Directory of the nodes' data and logs (node-I/, node-I.log).
    #[arg(long, default_value = "./raftkv-data")]
    pub data_dir: PathBuf,
    /// Client port of node 0; node I uses BASE+10I (client), +1 (peer), +2 (HTTP).
    #[arg(long, default_value_t = 7379)]
    pub base_port: u16,
    /// Restart a node 1 s after it exits (default: report it and leave it down).
    #[arg(long)]
    pub restart: bool,
    /// TLS on every port, client certificates required: makes a CA and
    /// certificates in DATA_DIR/tls (kept for the next run) and prints the
    /// exports that point raftctl at them.
    #[arg(long)]
    pub tls: bool,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Workload: set, get, or mixed (see --read-percent); failover: kill
    /// the leader of a `raftctl local` cluster and measure the write gap.
    #[arg(value_enum, default_value_t = Workload::Set)]
    pub workload: Workload,
    /// Concurrent clients, each with its own connection and session; a
    /// comma-separated list (1,16,256) runs one point per count (a sweep).
    #[arg(long, value_delimiter = ',', default_value = "64")]
    pub clients: Vec<usize>,
    /// Total requests (default: run for --duration).
    #[arg(long, conflicts_with = "duration")]
    pub requests: Option<u64>,
    /// How long to run when --requests is not given.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 1000)]
    pub key_space: u64,
    /// Bytes per written value; a comma-separated list runs one point per size.
    #[arg(long, value_delimiter = ',', default_value = "100")]
    pub value_size: Vec<usize>,
    /// Share of reads in the mixed workload, in percent.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub read_percent: u8,
    /// Open loop: requests offered per second, all clients together, on a
    /// fixed schedule whatever the answers; latency counts from each
    /// request's planned start. Default: closed loop. failover: writes per
    /// second (default 200).
    #[arg(long)]
    pub rate: Option<u32>,
    /// The system under test: raftkv, or etcd (v3 API at --endpoints; only
    /// in a raftctl built with `--features etcd`).
    #[arg(long, value_enum, default_value_t = Target::Raftkv)]
    pub target: Target,
    /// Server CPU from /proc/PID/stat of these local processes (user and
    /// system apart). Default: the pids a `raftctl local` supervisor on
    /// --data-dir gives, else each member's /metrics (total only).
    #[arg(long, value_delimiter = ',')]
    pub cpu_pids: Vec<u32>,
    /// The members' /metrics addresses (HOST:PORT). Default: raftkv, each
    /// endpoint's port + 2; etcd, the endpoint itself.
    #[arg(long, value_delimiter = ',', value_parser = parse_endpoint)]
    pub metrics: Vec<String>,
    #[command(flatten)]
    pub failover: super::bench::failover::FailoverArgs,
}

/// What `raftctl bench` drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Raftkv,
    Etcd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    Set,
    Get,
    Mixed,
    Failover,
}

/// `HOST:PORT` (an `http://` or `https://` prefix is dropped: --cacert
/// decides TLS): a host and a port number.
pub fn parse_endpoint(text: &str) -> Result<String, String> {
    let addr = text.trim();
    let addr = addr
        .strip_prefix("http://")
        .or_else(|| addr.strip_prefix("https://"))
        .unwrap_or(addr)
        .trim_end_matches('/');
    let bad = |why: &str| format!("endpoint {text:?} is not HOST:PORT ({why})");
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err(bad("bad host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 && !port.starts_with('+') => Ok(addr.to_string()),
        _ => Err(bad("the port is not a number from 1 to 65535")),
    }
}

/// EXPIRE's seconds: a canonical decimal (the integers INCR accepts) from 0
/// to [`crate::kv::MAX_TTL_SECONDS`].
pub fn parse_ttl_seconds(text: &str) -> Result<u64, String> {
    let max = crate::kv::MAX_TTL_SECONDS;
    match crate::kv::parse_integer(text.as_bytes()) {
        Some(n) if n < 0 => Err(format!("seconds must not be negative (got {text})")),
        Some(n) if n as u64 > max => Err(format!(
            "{text} seconds is above the limit of {max} seconds (about 285 years)"
        )),
        Some(n) => Ok(n as u64),
        None => Err(format!(
            "{text:?} is not a whole number of seconds (a decimal integer, no sign, \
             no leading zeros)"
        )),
    }
}

fn parse_replicas(text: &str) -> Result<i32, String> {
    parse_node_count(text).map(|n| n as i32)
}

fn parse_node_count(text: &str) -> Result<u32, String> {
    match text.parse() {
        Ok(n @ (1 | 3 | 5)) => Ok(n),
        _ => Err(format!("{text:?} is not 1, 3 or 5")),
    }
}

/// A Secret's name: a DNS subdomain (RFC 1123), as the API server demands,
/// refused here rather than by a deploy that already applied the Services.
fn parse_secret_name(text: &str) -> Result<String, String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if text.len() <= 253 && text.split('.').all(label_ok) {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not a Secret name (lowercase letters, digits, '-' and '.', at most 253)"
        ))
    }
}
