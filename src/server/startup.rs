//! Wires a node together. The peer listener (answering `Hello`) and the
//! probes start first, because the initial members ask one another before
//! any of them bootstraps; then the identity is checked or created
//! (`bootstrap`), and only then do the core, the node loop, the client
//! listener and the delivery of Raft messages start. Then it waits for
//! SIGTERM/SIGINT and stops gracefully.

use super::auth::{AuthService, AuthView};
use super::boot_clock::BootClock;
use super::bootstrap::{self, Boot};
use super::config::{Config, Dialers};
use super::driver::{Driver, Parts};
use super::gate::{Active, Gate};
use super::grpc::ClientService;
use super::grpc_metrics::GrpcMetricsLayer;
use super::node;
use super::peer_check::Params;
use super::peer_service::{self, RaftService};
use super::security::{self, MemberCheck, NodeTls};
use super::transport::{self, Sender, Transport};
use crate::kv::{Limits, StateMachine};
use crate::observe::{self, Metrics};
use crate::pb;
use crate::raft::{self, NodeId, Raft};
use crate::replica::SnapshotPolicy;
use crate::storage::Storage;
use crate::tls::{Reloadable, ServerFiles};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tower::Layer;

/// How long a leader waits for a successor to take over on SIGTERM.
const TRANSFER_GRACE: Duration = Duration::from_secs(2);

type Signal = Pin<Box<dyn Future<Output = &'static str> + Send>>;

/// Resolves when the listeners must stop.
#[derive(Clone)]
struct Stopped(watch::Receiver<bool>);

impl Stopped {
    fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }
}

/// Runs a node until a signal or a fatal error. Errors are one line for the
/// operator; they happen at start (bad data directory, port in use, a lost
/// volume) or when the disk fails.
pub async fn run(mut config: Config) -> Result<(), String> {
    let metrics = Metrics::new();
    let tls = NodeTls::load(&config)?;
    config.dial = Dialers {
        peer: tls.peer_dialer.clone(),
        client: tls.client_dialer.clone(),
    };
    let dir = config.data_dir.clone();
    if dir.exists() && !dir.is_dir() {
        return Err(format!(
            "data directory {} is not a directory (--data-dir)",
            dir.display()
        ));
    }
    let (mut storage, recovered) = tokio::task::spawn_blocking(move || Storage::open(&dir))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("data directory {}: {e}", config.data_dir.display()))?;
    metrics.watch_disk(storage.disk_bytes());
    let peer_listener = bind("peer-addr", config.peer_addr).await?;
    let http_listener = bind("http-addr", config.http_addr).await?;

    let gate = Arc::new(Gate::new(config.id));
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = Stopped(stop_rx);
    let raft_service = RaftService {
        id: NodeId(config.id),
        gate: gate.clone(),
        params: params(&config),
        members: (tls.peer_port.is_some()).then(|| MemberCheck::new(&config, gate.peers.clone())),
    };
    let peer_router = tonic::transport::Server::builder()
        .add_service(peer_service::server(raft_service, peer_limit(&config)?));
    let peer_server = serve(
        peer_router,
        peer_listener,
        tls.peer_port.clone().map(|t| (t, "peer")),
        &metrics,
        &stopped,
    );
    let http = observe::http::serve(http_listener, metrics.clone(), gate.clone(), stopped.wait());
    let mut tasks = vec![
        tokio::spawn(async move {
            if let Err(e) = peer_server.await {
                tracing::error!(error = %e, "peer gRPC server failed");
            }
        }),
        tokio::spawn(http),
        tokio::spawn(tls.watch(metrics.clone(), stopped.wait())),
    ];

    let mut sig: Signal = Box::pin(signal());
    let boot = tokio::select! {
        b = bootstrap::prepare(&config, &mut storage, recovered, &gate) => Some(b),
        s = &mut sig => {
            tracing::info!(signal = s, "stopping before the node started");
            None
        }
    };
    let result = match boot {
        None => Ok(()),
        Some(Err(e)) => Err(e),
        Some(Ok(boot)) => {
            let node = Start {
                config: &config,
                client_tls: tls.client_port.clone(),
                boot,
                storage,
                gate: &gate,
                metrics,
                stopped: &stopped,
            };
            node.serve(&mut sig, &mut tasks).await
        }
    };
    let _ = stop_tx.send(true);
    // Peers' streams never end by themselves: give open calls a moment only.
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        for t in tasks {
            let _ = t.await;
        }
    })
    .await;
    result
}

/// What the node needs once its identity is settled.
struct Start<'a> {
    config: &'a Config,
    client_tls: Option<Arc<Reloadable<ServerFiles>>>,
    boot: Boot,
    storage: Storage,
    gate: &'a Gate,
    metrics: Metrics,
    stopped: &'a Stopped,
}

impl Start<'_> {
    /// Builds the core and the node loop, opens the gate to Raft messages,
    /// serves clients, and runs until `sig` or a fatal error.
    async fn serve(self, sig: &mut Signal, tasks: &mut Vec<JoinHandle<()>>) -> Result<(), String> {
        let config = self.config;
        let cluster_id = self.boot.identity.cluster_id.clone();
        let fresh = self.boot.fresh;
        let promote = self.boot.promote;
        let client_listener = bind("client-addr", config.client_addr).await?;
        let (sm, applied) = state_machine(config, &self.boot.persisted)?;
        let restored_bytes = self.boot.persisted.snapshot.as_ref();
        let restored_bytes = restored_bytes.map_or(0, |s| s.data.len() as u64);
        let clock = BootClock::start();
        let raft = Raft::new(raft_config(config)?, self.boot.persisted, clock.now());
        let transport = peer_transport(config, &cluster_id, self.gate, &self.metrics)?;
        self.metrics.identify(&cluster_id, config.id);

        let (node, inbox) = node::channels();
        let cert_auth = config
            .tls
            .client
            .as_ref()
            .is_some_and(|t| t.client_cert_auth);
        let (auth, auth_view) = super::auth::channel(&sm, cert_auth);
        let client_server = serve(
            client_services(config, &node, self.gate, &self.metrics, auth_view),
            client_listener,
            self.client_tls.map(|t| (t, "client")),
            &self.metrics,
            self.stopped,
        );

        let driver = Driver::new(Parts {
            config: config.clone(),
            cluster_id: cluster_id.clone(),
            raft,
            sm,
            applied,
            storage: self.storage,
            transport,
            metrics: self.metrics,
            clock,
            snapshot_policy: SnapshotPolicy {
                log_ratio: config.snapshot_log_ratio,
            },
            restored_bytes,
            auth,
        });
        self.gate.activate(Active {
            cluster_id: cluster_id.clone(),
            node: node.clone(),
        });
        tracing::info!(
            node = config.id,
            cluster_id = %cluster_id,
            fresh,
            client = %config.client_addr,
            peer = %config.peer_addr,
            http = %config.http_addr,
            "node started"
        );
        let mut loop_task = tokio::spawn(driver.run(inbox, config.heartbeat / 2));
        if promote {
            tasks.push(tokio::spawn(bootstrap::promote(config.clone())));
        }
        tasks.push(tokio::spawn(async move {
            if let Err(e) = client_server.await {
                tracing::error!(error = %e, "client gRPC server failed");
            }
        }));

        tokio::select! {
            r = &mut loop_task => match r {
                Ok(Ok(())) => Err("node loop ended unexpectedly".to_string()),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(format!("node loop panicked: {e}")),
            },
            s = sig => {
                tracing::info!(signal = s, "stopping");
                node.shutdown(TRANSFER_GRACE).await;
                match tokio::time::timeout(Duration::from_secs(2), loop_task).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => Err(format!("node loop panicked while stopping: {e}")),
                    Err(_) => Err("node loop did not stop within 2 s of its grace".to_string()),
                }
            }
        }
    }
}

/// The senders of Raft messages to the other members.
fn peer_transport(
    config: &Config,
    cluster_id: &str,
    gate: &Gate,
    metrics: &Metrics,
) -> Result<Transport, String> {
    let peers = config
        .peers
        .iter()
        .filter(|p| p.id != config.id)
        .map(|p| (NodeId(p.id), p.peer_addr.clone()))
        .collect();
    let sender = Sender {
        cluster_id: cluster_id.to_string(),
        params: params(config),
        message_limit: peer_limit(config)?,
        health: gate.peers.clone(),
        tls: config.dial.peer.clone(),
    };
    Ok(Transport::start(sender, peers, metrics.clone()))
}

/// The client port's services (Kv, Cluster), forwarding to the node loop.
fn client_services(
    config: &Config,
    node: &node::NodeHandle,
    gate: &Gate,
    metrics: &Metrics,
    auth: AuthView,
) -> tonic::transport::server::Router {
    let client = ClientService {
        node: node.clone(),
        metrics: metrics.clone(),
        peers: gate.peers.clone(),
        started: std::time::Instant::now(),
        auth: auth.clone(),
    };
    let limit = crate::status::client_message_limit(config.max_key_bytes, config.max_value_bytes);
    let counted = GrpcMetricsLayer::new(metrics);
    tonic::transport::Server::builder()
        .add_service(
            counted.layer(
                pb::kv_server::KvServer::new(client.clone())
                    .max_decoding_message_size(limit)
                    .max_encoding_message_size(limit),
            ),
        )
        .add_service(counted.layer(pb::cluster_server::ClusterServer::new(client)))
        .add_service(counted.layer(pb::auth_server::AuthServer::new(AuthService {
            view: auth,
            node: node.clone(),
        })))
}

/// The state machine from the snapshot, if any, and the index it covers.
fn state_machine(
    config: &Config,
    persisted: &raft::Persisted,
) -> Result<(StateMachine, u64), String> {
    let limits = limits(config);
    match &persisted.snapshot {
        Some(s) => {
            let sm = StateMachine::restore(limits, &s.data).map_err(|e| {
                format!(
                    "snapshot in {} does not load: {e:?}",
                    config.data_dir.display()
                )
            })?;
            Ok((sm, s.meta.last.index.0))
        }
        None => Ok((StateMachine::new(limits), 0)),
    }
}

pub(crate) fn raft_config(c: &Config) -> Result<raft::Config, String> {
    let mut rc = raft::Config::new(NodeId(c.id));
    rc.election_timeout = c.election_timeout;
    rc.heartbeat_interval = c.heartbeat;
    rc.lease_duration = c.lease;
    rc.max_clock_drift = c.max_clock_drift;
    rc.snapshot_threshold = c.snapshot_threshold;
    rc.seed = rand::random();
    rc.validate()
        .map_err(|e| format!("raft configuration: {e}"))?;
    Ok(rc)
}

/// The parameters every member must share (see `peer_check`).
pub(crate) fn params(c: &Config) -> Params {
    Params::new(c.lease, c.max_clock_drift, c.election_timeout, &limits(c))
}

/// The state machine's limits from the node's settings (shared with every
/// member through [`Params`]).
pub(super) fn limits(c: &Config) -> Limits {
    Limits {
        max_key_bytes: c.max_key_bytes,
        max_value_bytes: c.max_value_bytes,
        ..Limits::default()
    }
}

/// The peer port's message size limit (see `transport::peer_message_limit`).
pub(crate) fn peer_limit(c: &Config) -> Result<usize, String> {
    let rc = raft_config(c)?;
    Ok(transport::peer_message_limit(
        &rc,
        c.max_key_bytes,
        c.max_value_bytes,
    ))
}

async fn bind(setting: &str, addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("{setting}: cannot listen on {addr}: {e}"))
}

type Serving = Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>>;

/// Serves `router` on `listener` until stopped: in TLS when `tls` is set
/// (with the port's name for logs and metrics), else in plaintext.
fn serve(
    router: tonic::transport::server::Router,
    listener: TcpListener,
    tls: Option<(Arc<Reloadable<ServerFiles>>, &'static str)>,
    metrics: &Metrics,
    stopped: &Stopped,
) -> Serving {
    match tls {
        None => {
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            Box::pin(router.serve_with_incoming_shutdown(incoming, stopped.wait()))
        }
        Some((files, port)) => {
            let refused = security::refusal_reporter(port, metrics.clone());
            let incoming = crate::tls::incoming(listener, files, refused, stopped.wait());
            Box::pin(router.serve_with_incoming_shutdown(incoming, stopped.wait()))
        }
    }
}

/// Resolves on SIGTERM or SIGINT with the signal's name.
async fn signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
