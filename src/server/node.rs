//! The door to the node loop: the inputs it takes and a cloneable handle
//! that gRPC handlers, the transport and the probes use to send them.
//!
//! Every input that expects an answer carries a oneshot sender; the loop
//! owns all Raft, state-machine and storage state, so nothing here locks.
//!
//! Peers' messages have a queue of their own ([`Inbox::peers`]), which the
//! loop drains before client inputs: a heartbeat or its acknowledgement
//! never waits behind thousands of queued proposals (see `driver`).

use crate::observe::Health;
use crate::pb;
use crate::raft::{ConfChange, Message, NodeId};
use futures::future::BoxFuture;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Client inputs queued for the node loop before it stops taking more
/// (backpressure for clients).
pub const INPUT_QUEUE: usize = 8192;

/// Peers' messages queued for the node loop; when full, a peer's stream
/// waits (which slows only that peer). The loop drains this queue first.
pub const PEER_QUEUE: usize = 4096;

/// Why a request to the node failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NodeError {
    /// This node is not the leader; `leader` is (id, client address) if known.
    #[error("not leader; {}", match leader {
        Some((id, addr)) => format!("leader is node {id} at {addr}"),
        None => "no leader known".to_string(),
    })]
    NotLeader { leader: Option<(u64, String)> },
    /// The write was proposed but leadership was lost before it committed.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// The request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The leader cannot take it now (e.g. a membership change in progress).
    #[error("{0}")]
    Busy(String),
    /// The learner to promote has not caught up with the log yet.
    #[error("learner {0} has not caught up with the log yet")]
    LearnerBehind(u64),
    /// The node failed, not the request (a bug, never the client's input).
    #[error("internal: {0}")]
    Internal(String),
    /// The node is shutting down or its loop has stopped.
    #[error("node is stopping")]
    Stopped,
}

pub use crate::replica::{ReadAnswer, ReadKind};

/// Where a node added at run time listens.
#[derive(Debug, Clone, Default)]
pub struct MemberAddrs {
    pub peer: String,
    pub client: String,
}

pub type Reply<T> = oneshot::Sender<Result<T, NodeError>>;

/// A membership change as a client asks for it.
pub struct ChangeRequest {
    pub change: ConfChange,
    /// Where an added node listens.
    pub addrs: Option<MemberAddrs>,
    /// The client's session and user, which make the change exactly-once
    /// (docs/consensus.md, "Membership changes, exactly once").
    pub context: Option<pb::ChangeContext>,
}

/// One input of the node loop, other than a peer's message.
pub enum Input {
    /// A client's write and its authenticated user (empty: none).
    Write(pb::WriteRequest, String, Reply<pb::WriteResponse>),
    Read(ReadKind, Reply<ReadAnswer>),
    /// A membership change; answered with its log index once committed
    /// (or with the session's refusal).
    Change(ChangeRequest, Reply<pb::ChangeResponse>),
    /// Hand leadership to `to`, or to the most caught-up voter if `None`.
    Transfer(Option<NodeId>, Reply<u64>),
    Status(oneshot::Sender<pb::StatusResponse>),
    Members(oneshot::Sender<pb::MembersResponse>),
    /// Readiness: Ok or the reason the node is not ready.
    Ready(oneshot::Sender<Result<(), String>>),
    Ping(oneshot::Sender<()>),
    /// Graceful stop: hand off leadership (≤ `grace`), sync, and end the loop.
    Shutdown(Duration, oneshot::Sender<()>),
}

/// The node loop's two queues: peers' messages, and everything else.
pub struct Inbox {
    /// Each with the instant it was queued (for the queue-wait metric).
    pub peers: mpsc::Receiver<(std::time::Instant, Message)>,
    pub inputs: mpsc::Receiver<Input>,
}

/// A handle and the loop's inbox it sends to.
pub fn channels() -> (NodeHandle, Inbox) {
    let (tx, inputs) = mpsc::channel(INPUT_QUEUE);
    let (peer_tx, peers) = mpsc::channel(PEER_QUEUE);
    (NodeHandle { tx, peer_tx }, Inbox { peers, inputs })
}

/// A cheap, cloneable sender of inputs to the node loop.
#[derive(Clone)]
pub struct NodeHandle {
    tx: mpsc::Sender<Input>,
    peer_tx: mpsc::Sender<(std::time::Instant, Message)>,
}

impl NodeHandle {
    /// Hands a peer's message to the loop on the peers' own queue, waiting
    /// if it is full (which slows only that peer's stream).
    pub async fn peer_message(&self, m: Message) -> Result<(), tonic::Status> {
        self.peer_tx
            .send((std::time::Instant::now(), m))
            .await
            .map_err(|_| crate::status::stopping())
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Input) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)?
    }

    async fn query<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Input,
    ) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// A write on behalf of the authenticated `user` (empty: none).
    pub async fn write(
        &self,
        req: pb::WriteRequest,
        user: String,
    ) -> Result<pb::WriteResponse, NodeError> {
        self.ask(|r| Input::Write(req, user, r)).await
    }

    pub async fn read(&self, kind: ReadKind) -> Result<ReadAnswer, NodeError> {
        self.ask(|r| Input::Read(kind, r)).await
    }

    pub async fn change(&self, request: ChangeRequest) -> Result<pb::ChangeResponse, NodeError> {
        self.ask(|r| Input::Change(request, r)).await
    }

    pub async fn transfer(&self, to: Option<NodeId>) -> Result<u64, NodeError> {
        self.ask(|r| Input::Transfer(to, r)).await
    }

    pub async fn status(&self) -> Result<pb::StatusResponse, NodeError> {
        self.query(Input::Status).await
    }

    pub async fn members(&self) -> Result<pb::MembersResponse, NodeError> {
        self.query(Input::Members).await
    }

    /// Asks the loop to stop gracefully and waits until it has.
    pub async fn shutdown(&self, grace: Duration) {
        let _ = self.query(|r| Input::Shutdown(grace, r)).await;
    }
}

impl Health for NodeHandle {
    fn live(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let ping = self.query(Input::Ping);
            match tokio::time::timeout(Duration::from_secs(1), ping).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err("node loop has stopped".into()),
                Err(_) => Err("node loop did not answer within 1 s".into()),
            }
        })
    }

    fn ready(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let ready = self.query(Input::Ready);
            match tokio::time::timeout(Duration::from_secs(1), ready).await {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => Err("node loop has stopped".into()),
                Err(_) => Err("node loop did not answer within 1 s".into()),
            }
        })
    }
}
