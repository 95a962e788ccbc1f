//! Peer transport, outbound: two long-lived `Raft/Send` streams per peer,
//! each on its own connection (the receiving side is `peer_service`).
//!
//! The lease depends on small messages only — heartbeats and their
//! answers, votes, TimeoutNow — and those take the control lane; appends
//! and snapshot chunks, up to a megabyte each, and their answers take the
//! data lane (see [`Lane`]). On one stream a heartbeat queued behind
//! megabytes of entries (this queue, the stream's channel, HTTP/2 flow
//! control and the socket) and reached a busy follower after the lease had
//! run out (docs/performance.md, "Large values and the lease"). Raft allows
//! the lanes to reorder messages between them; each keeps its own order.
//!
//! Raft tolerates lost messages, so the node loop never waits for the network:
//! it puts messages in a bounded queue per lane and, when a queue is full, the
//! message is dropped. Each lane has its own task, so a slow or dead peer
//! never stalls the others.
//!
//! A batch is capped by bytes as well as by count: gRPC refuses a message
//! over the receiver's decode limit by resetting the whole stream, which
//! loses the heartbeats queued behind it and backs the reconnection off. A
//! follower catching up is exactly when several ~1 MiB appends queue at
//! once, so without the cap a batch of them crossed tonic's 4 MiB default.
//!
//! A stream that was up and breaks (reset or closed by the peer, as the
//! kernel does when the peer's process dies) is reported to the node loop,
//! which feeds it to the core as `Raft::connection_lost`: a follower whose
//! leader died campaigns without waiting out its election timeout
//! (docs/consensus.md, "Failover on a broken connection"). The task then
//! reconnects at once, without a backoff, so that a live peer behind a
//! reset connection (a proxy's) is heard again within the core's grace.

use super::peer_check::{Params, PeerHealth};
use super::wire;
use crate::observe::Metrics;
use crate::pb::{self, raft_client::RaftClient};
use crate::raft::{self, Message, MessageBody, NodeId};
use crate::tls::ClientTls;
use prost::Message as _;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;
use tonic::{Response, Status};

/// Messages waiting for one peer; beyond this they are dropped.
const QUEUE: usize = 4096;
/// Most messages in one `PeerBatch`.
const MAX_BATCH: usize = 256;
/// Most encoded bytes of messages in one `PeerBatch`, unless its one message
/// is larger (see [`peer_message_limit`]).
pub const MAX_BATCH_BYTES: usize = 2 << 20;
/// Room for a batch's or message's framing and fields beyond its payload.
const ENVELOPE: usize = 64 << 10;

/// The largest `PeerBatch` a node sends and accepts (tonic's encode and
/// decode limits on the peer port), from the settings that bound one
/// message: an append carries up to `max_batch_bytes` of entries and at
/// least one entry (a key and a value at their limits), a snapshot message
/// one chunk. A batch holds messages up to [`MAX_BATCH_BYTES`] or a single
/// larger message, so it never exceeds this.
pub fn peer_message_limit(
    rc: &raft::Config,
    max_key_bytes: usize,
    max_value_bytes: usize,
) -> usize {
    let entry = max_key_bytes + max_value_bytes + ENVELOPE;
    let message = (rc.max_batch_bytes + entry).max(rc.snapshot_chunk_bytes) + ENVELOPE;
    MAX_BATCH_BYTES.max(message) + ENVELOPE
}

/// What every outbound batch carries and how large it may be.
#[derive(Clone)]
pub struct Sender {
    pub cluster_id: String,
    pub params: Params,
    /// See [`peer_message_limit`].
    pub message_limit: usize,
    pub health: Arc<PeerHealth>,
    /// Mutual TLS to the peers (docs/security.md); plaintext when `None`.
    pub tls: Option<ClientTls>,
}
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// A connection that lasted this long and broke is tried again at once.
const QUICK_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Which of a peer's two streams a message takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// What the lease and elections wait for: small, never behind entries.
    Control,
    /// Replication: appends and snapshot chunks, and their answers.
    Data,
}

impl Lane {
    /// The lane a message with `body` takes.
    pub fn of(body: &MessageBody) -> Lane {
        match body {
            MessageBody::Append { .. }
            | MessageBody::AppendResponse { .. }
            | MessageBody::Snapshot { .. }
            | MessageBody::SnapshotResponse { .. } => Lane::Data,
            MessageBody::Heartbeat { .. }
            | MessageBody::HeartbeatResponse { .. }
            | MessageBody::Vote { .. }
            | MessageBody::VoteResponse { .. }
            | MessageBody::TimeoutNow { .. } => Lane::Control,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Lane::Control => "control",
            Lane::Data => "data",
        }
    }
}

/// One peer's queues, one per lane.
struct Lanes {
    control: mpsc::Sender<pb::PeerMessage>,
    data: mpsc::Sender<pb::PeerMessage>,
}

impl Lanes {
    fn queue(&self, lane: Lane) -> &mpsc::Sender<pb::PeerMessage> {
        match lane {
            Lane::Control => &self.control,
            Lane::Data => &self.data,
        }
    }
}

/// The sending side: per peer, a queue and a task for each lane.
pub struct Transport {
    queues: HashMap<NodeId, Lanes>,
    tasks: Vec<JoinHandle<()>>,
    metrics: Metrics,
    sender: Sender,
    /// Where the peer tasks report a broken connection, and the node
    /// loop's end of it (taken once, by `take_losses`).
    lost: mpsc::UnboundedSender<NodeId>,
    losses: Option<mpsc::UnboundedReceiver<NodeId>>,
}

impl Transport {
    /// Starts two outbound tasks, one per lane, for each peer in `peers`
    /// (id, `host:port`).
    pub fn start(sender: Sender, peers: Vec<(NodeId, String)>, metrics: Metrics) -> Transport {
        let (lost, losses) = mpsc::unbounded_channel();
        let mut t = Transport {
            queues: HashMap::new(),
            tasks: Vec::new(),
            metrics,
            sender,
            lost,
            losses: Some(losses),
        };
        for (id, addr) in peers {
            t.spawn(id, addr);
        }
        t
    }

    fn spawn(&mut self, id: NodeId, addr: String) {
        let mut lane_task = |lane: Lane| {
            let (tx, rx) = mpsc::channel(QUEUE);
            let peer = PeerLane {
                id,
                lane,
                addr: addr.clone(),
            };
            let task = run_peer(peer, self.sender.clone(), rx, self.lost.clone());
            self.tasks.push(tokio::spawn(task));
            tx
        };
        let lanes = Lanes {
            control: lane_task(Lane::Control),
            data: lane_task(Lane::Data),
        };
        self.queues.insert(id, lanes);
    }

    /// The peers whose established connection broke, in the order it
    /// happened (for the node loop; `None` after the first call).
    pub fn take_losses(&mut self) -> Option<mpsc::UnboundedReceiver<NodeId>> {
        self.losses.take()
    }

    /// Queues `messages` without waiting; drops what does not fit.
    pub fn send(&self, messages: Vec<Message>) {
        for m in messages {
            self.metrics.peer_round_trips.sent(&m);
            let Some(lanes) = self.queues.get(&m.to) else {
                tracing::debug!(to = %m.to, "message to a node with no known address dropped");
                self.metrics.peer_messages_dropped.inc();
                continue;
            };
            let q = lanes.queue(Lane::of(&m.body));
            if q.try_send(wire::message_to_pb(&m)).is_err() {
                self.metrics.peer_messages_dropped.inc();
            }
        }
    }

    /// Adds a peer learned from a membership change (no-op if known).
    /// (`cluster_id` is this node's, as given to `start`.)
    pub fn add_peer(&mut self, cluster_id: &str, id: NodeId, addr: String) {
        debug_assert_eq!(cluster_id, self.sender.cluster_id);
        if self.queues.contains_key(&id) {
            return;
        }
        self.spawn(id, addr);
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// One lane to one peer: what its task connects to and logs.
struct PeerLane {
    id: NodeId,
    lane: Lane,
    addr: String,
}

/// Connects one lane to its peer, streams batches, and reconnects with
/// backoff. The endpoint is built from the host name on every attempt so a
/// pod's new IP is found through DNS.
async fn run_peer(
    peer: PeerLane,
    sender: Sender,
    mut rx: mpsc::Receiver<pb::PeerMessage>,
    lost: mpsc::UnboundedSender<NodeId>,
) {
    let PeerLane { id, lane, addr } = peer;
    let lane = lane.name();
    let mut backoff = MIN_BACKOFF;
    loop {
        let mut up = false;
        let started = tokio::time::Instant::now();
        let result = stream_to(&addr, &sender, &mut rx, &mut backoff, &mut up).await;
        let broke = up
            && match &result {
                Ok(StreamEnd::QueueClosed) => false,
                Ok(StreamEnd::Ended) => true,
                Err(e) => {
                    !(refusal(e.code())
                        || crate::tls::handshake_failure(e).is_some()
                        || e.code() == tonic::Code::OutOfRange)
                }
            };
        if broke {
            // An established connection broke: tell the core, and try
            // again at once (a live peer answers; a dead one refuses) —
            // unless it had not lasted long, which a flapping link must
            // not turn into a busy loop.
            tracing::debug!(peer = %id, addr, lane, "peer connection lost");
            let _ = lost.send(id);
            if started.elapsed() >= QUICK_RETRY_AFTER {
                while rx.try_recv().is_ok() {}
                continue;
            }
        }
        match result {
            Ok(StreamEnd::QueueClosed) => return,
            Ok(StreamEnd::Ended) => {}
            // Another cluster or other parameters, or our certificate is
            // refused (or theirs): nothing changes until an operator acts.
            Err(e) if refusal(e.code()) || crate::tls::handshake_failure(&e).is_some() => {
                let reason = crate::tls::handshake_failure(&e);
                let reason = reason.as_deref().unwrap_or(e.message());
                let why = format!("node {id} at {addr} refused our messages: {reason}");
                sender.health.refused(id.0, reason);
                sender
                    .health
                    .complaints
                    .error(&format!("refused-by-{id}"), &why);
            }
            // tonic's answer to a message over the receiver's decode limit:
            // the whole stream was reset. The byte cap should prevent it.
            Err(e) if e.code() == tonic::Code::OutOfRange => {
                tracing::warn!(peer = %id, addr, lane, error = %e, "peer stream reset: message too large");
            }
            Err(e) => tracing::debug!(peer = %id, addr, lane, error = %e, "peer stream failed"),
        }
        // What queued while the peer was away is stale; Raft will resend.
        while rx.try_recv().is_ok() {}
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Whether a peer's answer means it refuses us for good: another cluster
/// or other parameters (FAILED_PRECONDITION), a certificate that does not
/// name us (PERMISSION_DENIED), or a failed TLS handshake (UNAUTHENTICATED).
fn refusal(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        FailedPrecondition | PermissionDenied | Unauthenticated
    )
}

enum StreamEnd {
    /// The node dropped the queue: stop.
    QueueClosed,
    /// The peer closed the stream.
    Ended,
}

async fn stream_to(
    addr: &str,
    sender: &Sender,
    rx: &mut mpsc::Receiver<pb::PeerMessage>,
    backoff: &mut Duration,
    up: &mut bool,
) -> Result<StreamEnd, Status> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| Status::invalid_argument(e.to_string()))?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5));
    let channel = crate::tls::channel(endpoint, sender.tls.as_ref())
        .await
        .map_err(|e| match crate::tls::handshake_failure(&e) {
            Some(why) => Status::unauthenticated(why),
            None => Status::unavailable(e.to_string()),
        })?;
    let (tx, stream_rx) = mpsc::channel::<pb::PeerBatch>(8);
    let mut client = RaftClient::new(channel)
        .max_encoding_message_size(sender.message_limit)
        .max_decoding_message_size(sender.message_limit);
    let mut call = tokio::spawn(async move { client.send(ReceiverStream::new(stream_rx)).await });
    // A message that did not fit the last batch opens the next one.
    let mut held: Option<pb::PeerMessage> = None;
    let result = loop {
        let first = match held.take() {
            Some(m) => m,
            None => tokio::select! {
                r = &mut call => break flatten(r),
                m = rx.recv() => match m {
                    Some(m) => m,
                    None => { call.abort(); return Ok(StreamEnd::QueueClosed) }
                },
            },
        };
        let messages = fill_batch(first, rx, &mut held);
        let batch = pb::PeerBatch {
            cluster_id: sender.cluster_id.clone(),
            messages,
            params: Some(sender.params.to_pb()),
        };
        tokio::select! {
            r = &mut call => break flatten(r),
            r = tx.send(batch) => if r.is_err() { break Ok(()) },
        }
        // The peer takes our batches: the next failure starts a fresh
        // backoff, and is a connection lost.
        *backoff = MIN_BACKOFF;
        *up = true;
    };
    call.abort();
    result.map(|()| StreamEnd::Ended)
}

/// `first` and what else is queued, up to [`MAX_BATCH`] messages and
/// [`MAX_BATCH_BYTES`]; a message that does not fit is left in `held`.
fn fill_batch(
    first: pb::PeerMessage,
    rx: &mut mpsc::Receiver<pb::PeerMessage>,
    held: &mut Option<pb::PeerMessage>,
) -> Vec<pb::PeerMessage> {
    let mut bytes = first.encoded_len();
    let mut messages = vec![first];
    while messages.len() < MAX_BATCH {
        let Ok(m) = rx.try_recv() else { break };
        let size = m.encoded_len();
        if bytes + size > MAX_BATCH_BYTES {
            *held = Some(m);
            break;
        }
        bytes += size;
        messages.push(m);
    }
    messages
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
