//! Node configuration: flags, `RAFTKV_*` environment variables and a YAML
//! file, in that order of precedence, then defaults.
//!
//! clap merges flags and environment (a flag wins); every argument is an
//! `Option` so that an unset one can fall back to the file and then to the
//! default. The result is validated once, here, with messages that name the
//! setting, so a misconfigured pod fails at start and says why.

use clap::Parser;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::tls::{ClientTls, TlsFiles};

/// Command-line flags (each also read from its `RAFTKV_*` variable).
#[derive(Parser, Debug, Default, Clone)]
#[command(
    name = "raftkv",
    version,
    about = "A Raft-replicated key-value store node"
)]
pub struct Args {
    /// YAML file with any of the settings below (names in snake_case).
    #[arg(long, env = "RAFTKV_CONFIG")]
    pub config: Option<PathBuf>,
    /// This node's id (StatefulSet ordinal). Default: the ordinal of the pod name.
    #[arg(long, env = "RAFTKV_ID")]
    pub id: Option<u64>,
    /// Pod name to take the id from (`raftkv-2` is node 2); falls back to POD_NAME, HOSTNAME.
    #[arg(long, env = "RAFTKV_POD_NAME")]
    pub pod_name: Option<String>,
    /// Data directory (log, hard state, snapshots, identity).
    #[arg(long, env = "RAFTKV_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Listen address of the client gRPC services (Kv, Cluster).
    #[arg(long, env = "RAFTKV_CLIENT_ADDR")]
    pub client_addr: Option<String>,
    /// Listen address of the peer gRPC service (Raft).
    #[arg(long, env = "RAFTKV_PEER_ADDR")]
    pub peer_addr: Option<String>,
    /// Listen address of /metrics, /livez, /readyz.
    #[arg(long, env = "RAFTKV_HTTP_ADDR")]
    pub http_addr: Option<String>,
    /// Client address other nodes give to clients for this node. Default: from the peer list.
    #[arg(long, env = "RAFTKV_ADVERTISE_CLIENT_ADDR")]
    pub advertise_client_addr: Option<String>,
    /// Static peer list `0=HOST:PEER_PORT,1=HOST:PEER_PORT,...` (including this node).
    #[arg(long, env = "RAFTKV_PEERS")]
    pub peers: Option<String>,
    /// Client addresses of the peers `0=HOST:PORT,...`. Default: the peer host, port − 1.
    #[arg(long, env = "RAFTKV_PEER_CLIENT_ADDRS")]
    pub peer_client_addrs: Option<String>,
    /// StatefulSet name: peers are `<sts>-<i>.<service>.<namespace>.svc.<domain>`.
    #[arg(long, env = "RAFTKV_STATEFULSET")]
    pub statefulset: Option<String>,
    /// Headless Service of the StatefulSet.
    #[arg(long, env = "RAFTKV_SERVICE")]
    pub service: Option<String>,
    /// Kubernetes namespace.
    #[arg(long, env = "RAFTKV_NAMESPACE")]
    pub namespace: Option<String>,
    /// Number of founding members when peers come from StatefulSet naming.
    #[arg(long, env = "RAFTKV_REPLICAS")]
    pub replicas: Option<u64>,
    /// Cluster DNS domain (default cluster.local).
    #[arg(long, env = "RAFTKV_CLUSTER_DOMAIN")]
    pub cluster_domain: Option<String>,
    /// Expected cluster id: a data directory of another cluster is refused.
    #[arg(long, env = "RAFTKV_CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// Join the peers' existing cluster instead of bootstrapping, with an empty
    /// data directory: take the cluster id from a peer and wait for the leader
    /// to replicate (first `raftctl member remove ID`, then `raftctl member add
    /// ID --peer-addr HOST:PORT --learner`). Ignored once the data directory
    /// has an identity. See docs/operations.md.
    #[arg(
        long,
        env = "RAFTKV_JOIN",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub join: Option<bool>,
    /// With an empty data directory, join the peers' cluster by itself when
    /// this node is not a founder (an ordinal added by scaling up) or when
    /// the peers already form a cluster (its volume was lost): ask the leader
    /// to replace any old incarnation, start as a learner, and be promoted
    /// once caught up. Off: such a node refuses to start (docs/operations.md).
    #[arg(
        long,
        env = "RAFTKV_AUTO_JOIN",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub auto_join: Option<bool>,
    /// Minimum election timeout T in ms (timeouts are drawn from [T, 2T)).
    #[arg(long, env = "RAFTKV_ELECTION_TIMEOUT_MS")]
    pub election_timeout_ms: Option<u64>,
    /// Heartbeat interval in ms.
    #[arg(long, env = "RAFTKV_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// Leader lease L in ms (must be below the election timeout).
    #[arg(long, env = "RAFTKV_LEASE_MS")]
    pub lease_ms: Option<u64>,
    /// Bound on the relative clock drift between nodes (0.01 = 1%).
    #[arg(long, env = "RAFTKV_MAX_CLOCK_DRIFT")]
    pub max_clock_drift: Option<f64>,
    /// Entries applied since the last snapshot before taking a new one.
    #[arg(long, env = "RAFTKV_SNAPSHOT_THRESHOLD")]
    pub snapshot_threshold: Option<u64>,
    /// A snapshot also waits until the log written since the last one is
    /// this fraction of that snapshot's size (0 = on the entry count alone).
    #[arg(long, env = "RAFTKV_SNAPSHOT_LOG_RATIO")]
    pub snapshot_log_ratio: Option<f64>,
    /// Largest key in bytes (equal on every node: peers with another value
    /// refuse this node's messages).
    #[arg(long, env = "RAFTKV_MAX_KEY_BYTES")]
    pub max_key_bytes: Option<usize>,
    /// Largest value in bytes (equal on every node, like --max-key-bytes).
    #[arg(long, env = "RAFTKV_MAX_VALUE_BYTES")]
    pub max_value_bytes: Option<usize>,
    /// Seconds between the replica hash checks the leader proposes while
    /// entries are applied (0 = only on demand, by `raftctl check`).
    #[arg(long, env = "RAFTKV_STATE_CHECK_INTERVAL_S")]
    pub state_check_interval_s: Option<u64>,
    /// Certificate (PEM) served on the client port; with --key-file and
    /// --trusted-ca-file turns TLS on there (docs/security.md).
    #[arg(long, env = "RAFTKV_CERT_FILE")]
    pub cert_file: Option<PathBuf>,
    /// Private key (PEM) of --cert-file.
    #[arg(long, env = "RAFTKV_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// CA bundle (PEM) that client certificates must chain to.
    #[arg(long, env = "RAFTKV_TRUSTED_CA_FILE")]
    pub trusted_ca_file: Option<PathBuf>,
    /// Refuse clients without a certificate signed by --trusted-ca-file.
    #[arg(
        long,
        env = "RAFTKV_CLIENT_CERT_AUTH",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub client_cert_auth: Option<bool>,
    /// This member's certificate (PEM) on the peer port, served and
    /// presented to peers; with --peer-key-file and --peer-trusted-ca-file
    /// turns mutual TLS on between members.
    #[arg(long, env = "RAFTKV_PEER_CERT_FILE")]
    pub peer_cert_file: Option<PathBuf>,
    /// Private key (PEM) of --peer-cert-file.
    #[arg(long, env = "RAFTKV_PEER_KEY_FILE")]
    pub peer_key_file: Option<PathBuf>,
    /// CA bundle (PEM) that members' certificates must chain to.
    #[arg(long, env = "RAFTKV_PEER_TRUSTED_CA_FILE")]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, env = "RAFTKV_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Log filter (tracing EnvFilter syntax), e.g. info or raftkv=debug.
    #[arg(long, env = "RAFTKV_LOG_LEVEL")]
    pub log_level: Option<String>,
}

/// The YAML file: the same settings as the flags, all optional.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub id: Option<u64>,
    pub pod_name: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub client_addr: Option<String>,
    pub peer_addr: Option<String>,
    pub http_addr: Option<String>,
    pub advertise_client_addr: Option<String>,
    pub peers: Option<String>,
    pub peer_client_addrs: Option<String>,
    pub statefulset: Option<String>,
    pub service: Option<String>,
    pub namespace: Option<String>,
    pub replicas: Option<u64>,
    pub cluster_domain: Option<String>,
    pub cluster_id: Option<String>,
    pub join: Option<bool>,
    pub auto_join: Option<bool>,
    pub election_timeout_ms: Option<u64>,
    pub heartbeat_ms: Option<u64>,
    pub lease_ms: Option<u64>,
    pub max_clock_drift: Option<f64>,
    pub snapshot_threshold: Option<u64>,
    pub snapshot_log_ratio: Option<f64>,
    pub max_key_bytes: Option<usize>,
    pub max_value_bytes: Option<usize>,
    pub state_check_interval_s: Option<u64>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub trusted_ca_file: Option<PathBuf>,
    pub client_cert_auth: Option<bool>,
    pub peer_cert_file: Option<PathBuf>,
    pub peer_key_file: Option<PathBuf>,
    pub peer_trusted_ca_file: Option<PathBuf>,
    pub log_format: Option<String>,
    pub log_level: Option<String>,
}

/// How logs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// One member of the initial cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub id: u64,
    /// `host:port` of its Raft service; the host is resolved on every connect.
    pub peer_addr: String,
    /// `host:port` of its client services, given to clients that must redirect.
    pub client_addr: String,
}

/// The validated configuration of a node.
#[derive(Clone, Debug)]
pub struct Config {
    pub id: u64,
    pub data_dir: PathBuf,
    pub client_addr: SocketAddr,
    pub peer_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub advertise_client_addr: String,
    /// Every initial member and this node, sorted by id.
    pub peers: Vec<Peer>,
    /// Whether this node is an initial member. Only a StatefulSet ordinal at
    /// or above `--replicas` (a pod added by scaling up) is not: it can only
    /// join, never bootstrap.
    pub founder: bool,
    pub cluster_id: Option<String>,
    /// Join an existing cluster rather than bootstrap (empty data directory only).
    pub join: bool,
    /// Join (or replace a lost incarnation) without an operator.
    pub auto_join: bool,
    pub election_timeout: Duration,
    pub heartbeat: Duration,
    pub lease: Duration,
    pub max_clock_drift: f64,
    pub snapshot_threshold: u64,
    /// See [`crate::replica::SnapshotPolicy`].
    pub snapshot_log_ratio: f64,
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    /// Time between scheduled replica hash checks; `None`: on demand only.
    pub state_check_interval: Option<Duration>,
    pub log_format: LogFormat,
    pub log_level: String,
    /// Which ports speak TLS, with which files (docs/security.md).
    pub tls: TlsSettings,
    /// The dialers to peers and to members' client ports, set when the
    /// node starts from `tls` (plaintext when `None`).
    pub dial: Dialers,
    /// With StatefulSet naming, the DNS name of any member's pod, also of
    /// members added later: `(statefulset, "service.namespace.svc.domain")`.
    pub pod_hosts: Option<(String, String)>,
}

/// TLS on the node's ports. `None`: plaintext.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub client: Option<ClientPortTls>,
    /// Mutual TLS between members: always requires a member certificate.
    pub peer: Option<TlsFiles>,
}

/// TLS on the client port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientPortTls {
    pub files: TlsFiles,
    /// Clients must present a certificate signed by `files.ca`.
    pub client_cert_auth: bool,
}

/// TLS dialers, loaded from [`TlsSettings`] at start.
#[derive(Clone, Debug, Default)]
pub struct Dialers {
    /// To other members' peer ports (presents this member's certificate).
    pub peer: Option<ClientTls>,
    /// To members' client ports (joining a cluster asks its leader there).
    pub client: Option<ClientTls>,
}

impl Config {
    /// Parses the process's flags and environment, reads `--config` if any,
    /// and validates. The error names the offending setting.
    /// `--help` and `--version` print and exit here.
    pub fn load() -> Result<Config, String> {
        let args = match Args::try_parse() {
            Ok(a) => a,
            Err(e) => match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    e.exit()
                }
                _ => {
                    let text = e.to_string();
                    let first = text.lines().next().unwrap_or("invalid arguments");
                    return Err(first.trim_start_matches("error: ").to_string());
                }
            },
        };
        Config::from_args(args, &|k| std::env::var(k).ok())
    }

    /// Resolves `args` (flags already merged with env by clap) over the YAML
    /// file it names, then defaults. `host_env` supplies POD_NAME/HOSTNAME.
    pub fn from_args(
        args: Args,
        host_env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, String> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        resolve(args, file, host_env)
    }

    /// The host of member `id`'s peer address, if known: from the peer
    /// list, or for a member added later, from the StatefulSet's naming.
    pub fn peer_host(&self, id: u64) -> Option<String> {
        if let Some(p) = self.peers.iter().find(|p| p.id == id) {
            return Some(host_of(&p.peer_addr).to_string());
        }
        let (sts, rest) = self.pod_hosts.as_ref()?;
        Some(format!("{sts}-{id}.{rest}"))
    }

    /// The peer entry of this node.
    pub fn me(&self) -> &Peer {
        self.peers
            .iter()
            .find(|p| p.id == self.id)
            .expect("validated: own id is in the peer list")
    }
}

fn read_file(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("config: cannot read {}: {e}", path.display()))?;
    serde_norway::from_str(&text).map_err(|e| format!("config: {}: {e}", path.display()))
}

macro_rules! pick {
    ($args:ident, $file:ident, $field:ident) => {
        $args.$field.or($file.$field)
    };
}

fn resolve(
    args: Args,
    file: FileConfig,
    host_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, String> {
    let pod_name = pick!(args, file, pod_name)
        .or_else(|| host_env("POD_NAME"))
        .or_else(|| host_env("HOSTNAME"));
    let id = match pick!(args, file, id) {
        Some(id) => id,
        None => {
            let name = pod_name.ok_or(
                "id: set --id (RAFTKV_ID) or --pod-name (POD_NAME) with an ordinal like raftkv-2",
            )?;
            ordinal(&name).ok_or_else(|| {
                format!(
                    "id: pod name {name:?} does not end in an ordinal (like raftkv-2); set --id"
                )
            })?
        }
    };
    let data_dir = pick!(args, file, data_dir).unwrap_or_else(|| PathBuf::from("raftkv-data"));
    let client_addr = socket(
        "client-addr",
        pick!(args, file, client_addr),
        "0.0.0.0:7379",
    )?;
    let peer_addr = socket("peer-addr", pick!(args, file, peer_addr), "0.0.0.0:7380")?;
    let http_addr = socket("http-addr", pick!(args, file, http_addr), "0.0.0.0:7381")?;

    let mut founder = true;
    let mut pod_hosts = None;
    let mut peers = match (pick!(args, file, peers), pick!(args, file, statefulset)) {
        (Some(_), Some(_)) => {
            return Err("peers: give either --peers or --statefulset, not both".into());
        }
        (Some(list), None) => parse_peer_list("peers", &list)?
            .into_iter()
            .map(|(id, peer_addr)| {
                let client_addr = with_port(&peer_addr, port_of(&peer_addr).saturating_sub(1));
                Peer {
                    id,
                    peer_addr,
                    client_addr,
                }
            })
            .collect::<Vec<_>>(),
        (None, Some(sts)) => {
            let service =
                pick!(args, file, service).ok_or("service: required with --statefulset")?;
            let namespace = pick!(args, file, namespace).unwrap_or_else(|| "default".into());
            let replicas =
                pick!(args, file, replicas).ok_or("replicas: required with --statefulset")?;
            if replicas == 0 {
                return Err("replicas: must be at least 1".into());
            }
            let domain =
                pick!(args, file, cluster_domain).unwrap_or_else(|| "cluster.local".into());
            // The founders, and this pod if scaling up added it.
            founder = id < replicas;
            pod_hosts = Some((sts.clone(), format!("{service}.{namespace}.svc.{domain}")));
            (0..replicas)
                .chain((id >= replicas).then_some(id))
                .map(|i| {
                    let host = format!("{sts}-{i}.{service}.{namespace}.svc.{domain}");
                    Peer {
                        id: i,
                        peer_addr: format!("{host}:{}", peer_addr.port()),
                        client_addr: format!("{host}:{}", client_addr.port()),
                    }
                })
                .collect()
        }
        (None, None) => {
            return Err(
                "peers: set --peers 0=HOST:PORT,... or --statefulset with --service and --replicas"
                    .into(),
            );
        }
    };
    if let Some(list) = pick!(args, file, peer_client_addrs) {
        for (pid, addr) in parse_peer_list("peer-client-addrs", &list)? {
            let peer = peers
                .iter_mut()
                .find(|p| p.id == pid)
                .ok_or_else(|| format!("peer-client-addrs: node {pid} is not in the peer list"))?;
            peer.client_addr = addr;
        }
    }
    peers.sort_by_key(|p| p.id);
    let mut seen = BTreeSet::new();
    for p in &peers {
        if !seen.insert(p.id) {
            return Err(format!("peers: duplicate node id {}", p.id));
        }
    }
    let me = peers
        .iter()
        .find(|p| p.id == id)
        .ok_or_else(|| format!("peers: own id {id} is not in the peer list (ids: {seen:?})"))?;
    let advertise_client_addr =
        pick!(args, file, advertise_client_addr).unwrap_or_else(|| me.client_addr.clone());
    host_port("advertise-client-addr", &advertise_client_addr)?;

    let election_ms = pick!(args, file, election_timeout_ms).unwrap_or(300);
    let heartbeat_ms = pick!(args, file, heartbeat_ms).unwrap_or(50);
    let lease_ms = pick!(args, file, lease_ms).unwrap_or(250);
    if heartbeat_ms == 0 {
        return Err("heartbeat-ms: must be positive".into());
    }
    if lease_ms >= election_ms {
        return Err(format!(
            "lease-ms: the lease ({lease_ms} ms) must be shorter than the election timeout ({election_ms} ms)"
        ));
    }
    if heartbeat_ms >= lease_ms {
        return Err(format!(
            "heartbeat-ms: the heartbeat ({heartbeat_ms} ms) must be shorter than the lease ({lease_ms} ms)"
        ));
    }
    let max_clock_drift = pick!(args, file, max_clock_drift).unwrap_or(0.01);
    if !(0.0..0.5).contains(&max_clock_drift) {
        return Err(format!(
            "max-clock-drift: {max_clock_drift} is not in [0, 0.5)"
        ));
    }
    let snapshot_threshold = pick!(args, file, snapshot_threshold).unwrap_or(10_000);
    if snapshot_threshold == 0 {
        return Err("snapshot-threshold: must be positive".into());
    }
    let snapshot_log_ratio =
        pick!(args, file, snapshot_log_ratio).unwrap_or(crate::replica::DEFAULT_SNAPSHOT_LOG_RATIO);
    if !(0.0..=MAX_SNAPSHOT_LOG_RATIO).contains(&snapshot_log_ratio) {
        return Err(format!(
            "snapshot-log-ratio: {snapshot_log_ratio} is not in [0, {MAX_SNAPSHOT_LOG_RATIO}] \
             (the log written since the last snapshot, as a fraction of its size, \
             that a new snapshot waits for; 0 snapshots on the entry count alone)"
        ));
    }
    let defaults = crate::kv::Limits::default();
    let max_key_bytes = pick!(args, file, max_key_bytes).unwrap_or(defaults.max_key_bytes);
    let max_value_bytes = pick!(args, file, max_value_bytes).unwrap_or(defaults.max_value_bytes);
    if max_key_bytes == 0 || max_value_bytes == 0 {
        return Err("max-key-bytes/max-value-bytes: must be positive".into());
    }
    check_entry_fits(max_key_bytes, max_value_bytes)?;
    let state_check_interval = match pick!(args, file, state_check_interval_s) {
        Some(0) => None,
        Some(s) => Some(Duration::from_secs(s)),
        None => Some(crate::replica::state_check::DEFAULT_INTERVAL),
    };
    let log_format = match pick!(args, file, log_format).as_deref().unwrap_or("text") {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => return Err(format!("log-format: {other:?} is neither text nor json")),
    };
    let cluster_id = pick!(args, file, cluster_id).filter(|s| !s.is_empty());
    let client_tls = tls_files(
        ["cert-file", "key-file", "trusted-ca-file"],
        [
            pick!(args, file, cert_file),
            pick!(args, file, key_file),
            pick!(args, file, trusted_ca_file),
        ],
    )?;
    let client_cert_auth = pick!(args, file, client_cert_auth).unwrap_or(false);
    if client_cert_auth && client_tls.is_none() {
        return Err(
            "client-cert-auth: needs TLS on the client port (--cert-file, --key-file, --trusted-ca-file)"
                .into(),
        );
    }
    let peer_tls = tls_files(
        ["peer-cert-file", "peer-key-file", "peer-trusted-ca-file"],
        [
            pick!(args, file, peer_cert_file),
            pick!(args, file, peer_key_file),
            pick!(args, file, peer_trusted_ca_file),
        ],
    )?;
    Ok(Config {
        id,
        data_dir,
        client_addr,
        peer_addr,
        http_addr,
        advertise_client_addr,
        peers,
        cluster_id,
        founder,
        join: pick!(args, file, join).unwrap_or(false),
        auto_join: pick!(args, file, auto_join).unwrap_or(false),
        election_timeout: Duration::from_millis(election_ms),
        heartbeat: Duration::from_millis(heartbeat_ms),
        lease: Duration::from_millis(lease_ms),
        max_clock_drift,
        snapshot_threshold,
        snapshot_log_ratio,
        max_key_bytes,
        max_value_bytes,
        state_check_interval,
        log_format,
        log_level: pick!(args, file, log_level).unwrap_or_else(|| "info".into()),
        tls: TlsSettings {
            client: client_tls.map(|files| ClientPortTls {
                files,
                client_cert_auth,
            }),
            peer: peer_tls,
        },
        dial: Dialers::default(),
        pod_hosts,
    })
}

/// A certificate, key and CA given together, or none of them: half a TLS
/// setting would silently leave a port in plaintext.
fn tls_files(names: [&str; 3], paths: [Option<PathBuf>; 3]) -> Result<Option<TlsFiles>, String> {
    let missing: Vec<&str> = names
        .iter()
        .zip(&paths)
        .filter(|(_, p)| p.is_none())
        .map(|(n, _)| *n)
        .collect();
    match missing.len() {
        3 => Ok(None),
        0 => {
            let [cert, key, ca] = paths.map(|p| p.expect("checked: all given"));
            Ok(Some(TlsFiles { cert, key, ca }))
        }
        _ => Err(format!(
            "{}: TLS needs {}, {} and {} together; missing: {}",
            names[0],
            names[0],
            names[1],
            names[2],
            missing.join(", ")
        )),
    }
}

/// `raftkv-2` → 2.
/// Beyond this the log kept between snapshots (and replayed on a restart)
/// would be many times the state: surely a mistake.
const MAX_SNAPSHOT_LOG_RATIO: f64 = 10.0;

fn ordinal(name: &str) -> Option<u64> {
    name.rsplit_once('-')?.1.parse().ok()
}

fn socket(setting: &str, value: Option<String>, default: &str) -> Result<SocketAddr, String> {
    let v = value.unwrap_or_else(|| default.to_string());
    v.parse()
        .map_err(|e| format!("{setting}: {v:?} is not an IP:PORT address: {e}"))
}

/// Checks `host:port` (a DNS name or an IP; brackets for IPv6).
fn host_port(setting: &str, addr: &str) -> Result<(), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("{setting}: {addr:?} is not HOST:PORT"))?;
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!("{setting}: {addr:?} is not HOST:PORT"));
    }
    Ok(())
}

fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(0)
}

fn with_port(addr: &str, port: u16) -> String {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    format!("{host}:{port}")
}

/// Parses `0=HOST:PORT,1=HOST:PORT`.
fn parse_peer_list(setting: &str, list: &str) -> Result<Vec<(u64, String)>, String> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .ok_or_else(|| format!("{setting}: {item:?} is not ID=HOST:PORT"))?;
        let id = id
            .trim()
            .parse()
            .map_err(|_| format!("{setting}: {id:?} in {item:?} is not a node id"))?;
        host_port(setting, addr.trim())?;
        out.push((id, addr.trim().to_string()));
    }
    if out.is_empty() {
        return Err(format!("{setting}: empty list"));
    }
    Ok(out)
}

/// The largest command (a CAS: a key and two values) with its framing must
/// fit one WAL record: storage refuses a larger entry, and a node that
/// cannot persist a committed entry must stop. The client port's message
/// limit is the same sum (`status::client_message_limit`), computed here
/// without overflow.
fn check_entry_fits(max_key_bytes: usize, max_value_bytes: usize) -> Result<(), String> {
    let largest = max_value_bytes
        .checked_mul(2)
        .and_then(|v| v.checked_add(max_key_bytes))
        .and_then(|n| n.checked_add(crate::status::client_message_limit(0, 0)));
    let limit = crate::storage::MAX_RECORD_BYTES;
    match largest {
        Some(n) if n <= limit => Ok(()),
        _ => Err(format!(
            "max-key-bytes/max-value-bytes: a CAS at these limits (a key of {max_key_bytes} \
             bytes and two values of {max_value_bytes}) would not fit one log record \
             ({limit} bytes); lower --max-value-bytes"
        )),
    }
}

#[cfg(test)]
mod tests;
