//! Wires a node together: storage, identity, core, transport, node loop and
//! the three listeners; then waits for SIGTERM/SIGINT and stops gracefully.

use super::bootstrap;
use super::config::Config;
use super::driver::{Driver, Parts};
use super::grpc::ClientService;
use super::node::{INPUT_QUEUE, NodeHandle};
use super::transport::{RaftService, Transport};
use crate::kv::{Limits, StateMachine};
use crate::observe::{self, Metrics};
use crate::pb;
use crate::raft::{self, NodeId, Raft};
use crate::storage::Storage;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tonic::transport::server::TcpIncoming;

/// How long a leader waits for a successor to take over on SIGTERM.
const TRANSFER_GRACE: Duration = Duration::from_secs(2);

/// Runs a node until a signal or a fatal error. Errors are one line for the
/// operator; they happen at start (bad data directory, port in use) or when
/// the disk fails.
pub async fn run(config: Config) -> Result<(), String> {
    let metrics = Metrics::new();
    let dir = config.data_dir.clone();
    let (mut storage, recovered) = tokio::task::spawn_blocking(move || Storage::open(&dir))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("data directory {}: {e}", config.data_dir.display()))?;
    let boot = bootstrap::prepare(&config, &mut storage, recovered)?;
    let cluster_id = boot.identity.cluster_id.clone();

    let client_listener = bind("client-addr", config.client_addr).await?;
    let peer_listener = bind("peer-addr", config.peer_addr).await?;
    let http_listener = bind("http-addr", config.http_addr).await?;

    let limits = Limits {
        max_key_bytes: config.max_key_bytes,
        max_value_bytes: config.max_value_bytes,
    };
    let (sm, applied) = match &boot.persisted.snapshot {
        Some(s) => (
            StateMachine::restore(limits, &s.data).map_err(|e| {
                format!(
                    "snapshot in {} does not load: {e:?}",
                    config.data_dir.display()
                )
            })?,
            s.meta.last.index.0,
        ),
        None => (StateMachine::new(limits), 0),
    };
    let clock = std::time::Instant::now();
    let raft = Raft::new(
        raft_config(&config)?,
        boot.persisted,
        raft::Instant(clock.elapsed()),
    );
    let peers = config
        .peers
        .iter()
        .filter(|p| p.id != config.id)
        .map(|p| (NodeId(p.id), p.peer_addr.clone()))
        .collect();
    let transport = Transport::start(cluster_id.clone(), peers, metrics.clone());

    let (tx, rx) = mpsc::channel(INPUT_QUEUE);
    let node = NodeHandle::new(tx);
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    let raft_service = RaftService {
        id: NodeId(config.id),
        cluster_id: cluster_id.clone(),
        node: node.clone(),
    };
    let peer_server = tonic::transport::Server::builder()
        .add_service(pb::raft_server::RaftServer::new(raft_service))
        .serve_with_incoming_shutdown(incoming(peer_listener), stopped());
    let client = ClientService {
        node: node.clone(),
        metrics: metrics.clone(),
    };
    let client_server = tonic::transport::Server::builder()
        .add_service(pb::kv_server::KvServer::new(client.clone()))
        .add_service(pb::cluster_server::ClusterServer::new(client))
        .serve_with_incoming_shutdown(incoming(client_listener), stopped());
    let http = observe::http::serve(
        http_listener,
        metrics.clone(),
        Arc::new(node.clone()),
        stopped(),
    );

    let driver = Driver::new(Parts {
        config: config.clone(),
        cluster_id: cluster_id.clone(),
        raft,
        sm,
        applied,
        storage,
        transport,
        metrics,
        clock,
    });
    tracing::info!(
        node = config.id,
        cluster_id = %cluster_id,
        fresh = boot.fresh,
        client = %config.client_addr,
        peer = %config.peer_addr,
        http = %config.http_addr,
        "node started"
    );
    let mut loop_task = tokio::spawn(driver.run(rx, config.heartbeat / 2));
    let peer_task = tokio::spawn(peer_server);
    let client_task = tokio::spawn(client_server);
    let http_task = tokio::spawn(http);

    let result = tokio::select! {
        r = &mut loop_task => match r {
            Ok(Ok(())) => Err("node loop ended unexpectedly".to_string()),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(format!("node loop panicked: {e}")),
        },
        sig = signal() => {
            tracing::info!(signal = sig, "stopping");
            node.shutdown(TRANSFER_GRACE).await;
            match tokio::time::timeout(Duration::from_secs(2), loop_task).await {
                Ok(Ok(Err(e))) => Err(e),
                _ => Ok(()),
            }
        }
    };
    let _ = stop_tx.send(true);
    // Peers' streams never end by themselves: give open calls a moment only.
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        let _ = peer_task.await;
        let _ = client_task.await;
        let _ = http_task.await;
    })
    .await;
    result
}

fn raft_config(c: &Config) -> Result<raft::Config, String> {
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

async fn bind(setting: &str, addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("{setting}: cannot listen on {addr}: {e}"))
}

fn incoming(l: TcpListener) -> TcpIncoming {
    TcpIncoming::from(l).with_nodelay(Some(true))
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
