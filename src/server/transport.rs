//! Peer transport: one long-lived `Raft/Send` stream per peer, outbound, and
//! the `Raft` service that receives the other peers' streams and answers
//! their `Hello` (see `discovery`).
//!
//! Raft tolerates lost messages, so the node loop never waits for the network:
//! it puts messages in a bounded queue per peer and, when a queue is full, the
//! message is dropped. Each peer has its own task, so a slow or dead peer
//! never stalls the others.

use super::gate::{Active, Gate};
use super::node::NodeHandle;
use super::wire;
use crate::observe::Metrics;
use crate::pb::{self, raft_client::RaftClient};
use crate::raft::{Message, NodeId};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;
use tonic::{Request, Response, Status, Streaming};

/// Messages waiting for one peer; beyond this they are dropped.
const QUEUE: usize = 4096;
/// Most messages in one `PeerBatch`.
const MAX_BATCH: usize = 256;
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The sending side: a queue and a task per peer.
pub struct Transport {
    queues: HashMap<NodeId, mpsc::Sender<pb::PeerMessage>>,
    tasks: Vec<JoinHandle<()>>,
    metrics: Metrics,
}

impl Transport {
    /// Starts one outbound task per peer in `peers` (id, `host:port`).
    pub fn start(cluster_id: String, peers: Vec<(NodeId, String)>, metrics: Metrics) -> Transport {
        let mut queues = HashMap::new();
        let mut tasks = Vec::new();
        for (id, addr) in peers {
            let (tx, rx) = mpsc::channel(QUEUE);
            queues.insert(id, tx);
            tasks.push(tokio::spawn(run_peer(id, addr, cluster_id.clone(), rx)));
        }
        Transport {
            queues,
            tasks,
            metrics,
        }
    }

    /// Queues `messages` without waiting; drops what does not fit.
    pub fn send(&self, messages: Vec<Message>) {
        for m in messages {
            let Some(q) = self.queues.get(&m.to) else {
                tracing::debug!(to = %m.to, "message to a node with no known address dropped");
                self.metrics.peer_messages_dropped.inc();
                continue;
            };
            if q.try_send(wire::message_to_pb(&m)).is_err() {
                self.metrics.peer_messages_dropped.inc();
            }
        }
    }

    /// Adds a peer learned from a membership change (no-op if known).
    pub fn add_peer(&mut self, cluster_id: &str, id: NodeId, addr: String) {
        if self.queues.contains_key(&id) {
            return;
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        self.queues.insert(id, tx);
        self.tasks
            .push(tokio::spawn(run_peer(id, addr, cluster_id.to_string(), rx)));
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Connects to one peer, streams batches, and reconnects with backoff. The
/// endpoint is built from the host name on every attempt so a pod's new IP is
/// found through DNS.
async fn run_peer(
    id: NodeId,
    addr: String,
    cluster_id: String,
    mut rx: mpsc::Receiver<pb::PeerMessage>,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        match stream_to(&addr, &cluster_id, &mut rx, &mut backoff).await {
            Ok(StreamEnd::QueueClosed) => return,
            Ok(StreamEnd::Ended) => {}
            Err(e) if e.code() == tonic::Code::FailedPrecondition => {
                tracing::error!(peer = %id, addr, error = e.message(), "peer refused our messages");
            }
            Err(e) => tracing::debug!(peer = %id, addr, error = %e, "peer stream failed"),
        }
        // What queued while the peer was away is stale; Raft will resend.
        while rx.try_recv().is_ok() {}
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

enum StreamEnd {
    /// The node dropped the queue: stop.
    QueueClosed,
    /// The peer closed the stream.
    Ended,
}

async fn stream_to(
    addr: &str,
    cluster_id: &str,
    rx: &mut mpsc::Receiver<pb::PeerMessage>,
    backoff: &mut Duration,
) -> Result<StreamEnd, Status> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| Status::invalid_argument(e.to_string()))?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5));
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let (tx, stream_rx) = mpsc::channel::<pb::PeerBatch>(8);
    let mut client = RaftClient::new(channel);
    let mut call = tokio::spawn(async move { client.send(ReceiverStream::new(stream_rx)).await });
    let result = loop {
        let first = tokio::select! {
            r = &mut call => break flatten(r),
            m = rx.recv() => match m {
                Some(m) => m,
                None => { call.abort(); return Ok(StreamEnd::QueueClosed) }
            },
        };
        let mut messages = vec![first];
        while messages.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => messages.push(m),
                Err(_) => break,
            }
        }
        let batch = pb::PeerBatch {
            cluster_id: cluster_id.to_string(),
            messages,
        };
        tokio::select! {
            r = &mut call => break flatten(r),
            r = tx.send(batch) => if r.is_err() { break Ok(()) },
        }
        // The peer takes our batches: the next failure starts a fresh backoff.
        *backoff = MIN_BACKOFF;
    };
    call.abort();
    result.map(|()| StreamEnd::Ended)
}

fn flatten(
    r: Result<Result<Response<pb::PeerAck>, Status>, tokio::task::JoinError>,
) -> Result<(), Status> {
    match r {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(s)) => Err(s),
        Err(e) => Err(Status::internal(e.to_string())),
    }
}

/// The `Raft` gRPC service: answers `Hello` from the start and hands peers'
/// messages to the node loop once it runs (see `Gate`).
pub struct RaftService {
    pub id: NodeId,
    pub gate: Arc<Gate>,
}

impl RaftService {
    async fn deliver(&self, node: &NodeHandle, m: pb::PeerMessage) -> Result<(), Status> {
        let msg = wire::message_from_pb(m).map_err(|e| Status::invalid_argument(e.to_string()))?;
        if msg.to != self.id {
            // A stale DNS record can route another node's traffic here.
            tracing::warn!(to = %msg.to, from = %msg.from, "message for another node dropped");
            return Ok(());
        }
        node.peer_message(msg).await
    }

    /// The running node, or Unavailable while it is still starting.
    fn active(&self) -> Result<&Active, Status> {
        self.gate
            .active()
            .ok_or_else(|| Status::unavailable("node is starting"))
    }
}

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftService {
    async fn send(
        &self,
        request: Request<Streaming<pb::PeerBatch>>,
    ) -> Result<Response<pb::PeerAck>, Status> {
        let mut stream = request.into_inner();
        while let Some(batch) = stream.message().await? {
            // Before the node exists its messages are dropped; the stream
            // stays open so they flow as soon as it does.
            let Some(active) = self.gate.active() else {
                continue;
            };
            if batch.cluster_id != active.cluster_id {
                return Err(Status::failed_precondition(format!(
                    "cluster id mismatch: this node belongs to cluster {:?}, the sender to {:?}",
                    active.cluster_id, batch.cluster_id
                )));
            }
            for m in batch.messages {
                if let Err(e) = self.deliver(&active.node, m).await {
                    if e.code() == tonic::Code::InvalidArgument {
                        tracing::warn!(error = e.message(), "malformed peer message dropped");
                        continue;
                    }
                    return Err(e);
                }
            }
        }
        Ok(Response::new(pb::PeerAck {}))
    }

    async fn append_entries(
        &self,
        r: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::PeerAck>, Status> {
        self.unary(pb::peer_message::Body::Append(r.into_inner()))
            .await
    }

    async fn request_vote(
        &self,
        r: Request<pb::RequestVoteRequest>,
    ) -> Result<Response<pb::PeerAck>, Status> {
        self.unary(pb::peer_message::Body::Vote(r.into_inner()))
            .await
    }

    async fn install_snapshot(
        &self,
        r: Request<pb::InstallSnapshotRequest>,
    ) -> Result<Response<pb::PeerAck>, Status> {
        self.unary(pb::peer_message::Body::Snapshot(r.into_inner()))
            .await
    }

    async fn timeout_now(
        &self,
        r: Request<pb::TimeoutNowRequest>,
    ) -> Result<Response<pb::PeerAck>, Status> {
        self.unary(pb::peer_message::Body::TimeoutNow(r.into_inner()))
            .await
    }

    async fn hello(
        &self,
        r: Request<pb::HelloRequest>,
    ) -> Result<Response<pb::HelloResponse>, Status> {
        self.gate
            .hello(r.get_ref())
            .await
            .map(Response::new)
            .ok_or_else(|| Status::unavailable("node is starting"))
    }
}

impl RaftService {
    /// The unary RPCs carry no cluster id; answers travel on the streams.
    async fn unary(&self, body: pb::peer_message::Body) -> Result<Response<pb::PeerAck>, Status> {
        let active = self.active()?;
        self.deliver(&active.node, pb::PeerMessage { body: Some(body) })
            .await?;
        Ok(Response::new(pb::PeerAck {}))
    }
}
