//! The peer edge in process: a real `Transport` streaming to a real peer
//! server (with the node's limits and checks) whose node loop is a channel
//! the test reads.

use super::gate::{Active, Gate};
use super::node::channels;
use super::peer_check::{self, Params};
use super::peer_service::{self, RaftService};
use super::transport::{Sender, Transport, peer_message_limit};
use crate::observe::Metrics;
use crate::pb;
use crate::raft::{self, Entry, LogId, LogIndex, Message, MessageBody, NodeId, Payload, Term};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

const CLUSTER: &str = "c-1";
const ME: NodeId = NodeId(2);

fn params(lease_ms: u64) -> Params {
    Params::new(
        Duration::from_millis(lease_ms),
        0.01,
        Duration::from_millis(300),
        &crate::kv::Limits::default(),
    )
}

/// The node's own limit for the default settings (1 MiB values).
fn limit() -> usize {
    peer_message_limit(&raft::Config::new(ME), 4096, 1 << 20)
}

/// A peer server for node 2 with lease `lease_ms`; its address, its gate
/// and the node loop's input queue.
fn receiver(lease_ms: u64) -> (String, Arc<Gate>, Peers) {
    let gate = Arc::new(Gate::new(ME.0));
    let (node, inbox) = channels();
    gate.activate(Active {
        cluster_id: CLUSTER.into(),
        node,
    });
    let service = RaftService {
        id: ME,
        gate: gate.clone(),
        params: params(lease_ms),
        members: None,
    };
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = incoming.local_addr().unwrap().to_string();
    tokio::spawn(
        Server::builder()
            .add_service(peer_service::server(service, limit()))
            .serve_with_incoming(incoming),
    );
    (addr, gate, inbox.peers)
}

/// Node 1's transport to node 2 at `addr`, with lease `lease_ms`.
fn sender(addr: &str, lease_ms: u64) -> Transport {
    let sender = Sender {
        cluster_id: CLUSTER.into(),
        params: params(lease_ms),
        message_limit: limit(),
        health: Arc::default(),
        tls: None,
    };
    Transport::start(sender, vec![(ME, addr.to_string())], Metrics::new())
}

/// Appends of one `len`-byte entry each, after indexes `from..to`.
fn appends(from: u64, to: u64, len: usize) -> Vec<Message> {
    (from..to)
        .map(|i| Message {
            from: NodeId(1),
            to: ME,
            term: Term(2),
            body: MessageBody::Append {
                prev: LogId::new(2, i),
                entries: vec![Entry {
                    id: LogId::new(2, i + 1),
                    payload: Payload::Command(Bytes::from(vec![b'v'; len])),
                }],
                commit: LogIndex(0),
                round: i,
            },
        })
        .collect()
}

/// The next peer message the node loop receives, within `limit`.
/// The node loop's queue of peer messages.
type Peers = mpsc::Receiver<(std::time::Instant, Message)>;

async fn next_peer(rx: &mut Peers, limit: Duration) -> Option<Message> {
    let queued = tokio::time::timeout(limit, rx.recv()).await.ok().flatten();
    queued.map(|(_, m)| m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_1_mib_appends_crosses_without_a_stream_reset() {
    let (addr, _gate, mut rx) = receiver(250);
    let transport = sender(&addr, 250);
    // Connected and flowing first, so the burst below queues behind a live
    // stream as it does for a follower catching up.
    transport.send(appends(0, 1, 10));
    assert!(next_peer(&mut rx, Duration::from_secs(10)).await.is_some());
    // 24 appends of a 1 MiB entry queued at once: without the byte cap they
    // formed one ~24 MiB batch, over the decode limit, and the stream reset.
    transport.send(appends(1, 25, 1 << 20));
    for i in 1..25 {
        let m = next_peer(&mut rx, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("append {i} lost: the stream was reset"));
        assert!(matches!(m.body, MessageBody::Append { prev, .. } if prev.index.0 == i));
    }
}

fn heartbeat(round: u64) -> Message {
    Message {
        from: NodeId(1),
        to: ME,
        term: Term(2),
        body: MessageBody::Heartbeat {
            commit: LogIndex(0),
            round,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_overtakes_megabytes_of_appends_queued_before_it() {
    let (addr, _gate, mut rx) = receiver(250);
    let transport = sender(&addr, 250);
    // Both lanes connected first.
    transport.send(vec![heartbeat(0)]);
    transport.send(appends(0, 1, 10));
    for _ in 0..2 {
        assert!(next_peer(&mut rx, Duration::from_secs(10)).await.is_some());
    }
    // 32 MiB of appends, then a heartbeat: on one stream it came after all
    // of them; on its own lane it crosses while they are still on the way.
    transport.send(appends(1, 33, 1 << 20));
    transport.send(vec![heartbeat(1)]);
    let mut appends_before = 0;
    loop {
        let m = next_peer(&mut rx, Duration::from_secs(10))
            .await
            .expect("the heartbeat arrives");
        match m.body {
            MessageBody::Heartbeat { round: 1, .. } => break,
            MessageBody::Append { .. } => appends_before += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        appends_before < 16,
        "the heartbeat waited behind {appends_before} of the 32 appends sent before it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_with_another_lease_is_refused_and_makes_the_receiver_say_so() {
    let (addr, gate, mut rx) = receiver(250);
    let transport = sender(&addr, 200);
    for _ in 0..20 {
        transport.send(appends(0, 1, 10));
        tokio::time::sleep(Duration::from_millis(50)).await;
        if !gate.peers.problems().is_empty() {
            break;
        }
    }
    let problems = gate.peers.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("node 1") && problems[0].contains("lease 200 ms"),
        "{problems:?}"
    );
    assert!(problems[0].contains("lease 250 ms"), "{problems:?}");
    assert!(gate.peers.ready().is_err(), "its only peer disagrees");
    assert!(
        next_peer(&mut rx, Duration::from_millis(200))
            .await
            .is_none(),
        "no message of the refused sender reached the node loop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_peer_rpcs_check_the_cluster_id_and_lease() {
    let (addr, _gate, mut rx) = receiver(250);
    let mut client = pb::raft_client::RaftClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let vote = || pb::RequestVoteRequest {
        from: 1,
        to: ME.0,
        term: 3,
        last_log: Some(pb::LogId { term: 2, index: 4 }),
        ..Default::default()
    };
    let bare = client.request_vote(vote()).await.unwrap_err();
    assert_eq!(bare.code(), tonic::Code::FailedPrecondition, "{bare:?}");
    let mut other = tonic::Request::new(vote());
    peer_check::to_metadata(other.metadata_mut(), "another", params(250));
    let err = client.request_vote(other).await.unwrap_err();
    assert!(err.message().contains("cluster id mismatch"), "{err:?}");
    assert!(
        next_peer(&mut rx, Duration::from_millis(100))
            .await
            .is_none()
    );

    let mut good = tonic::Request::new(vote());
    peer_check::to_metadata(good.metadata_mut(), CLUSTER, params(250));
    client.request_vote(good).await.unwrap();
    let m = next_peer(&mut rx, Duration::from_secs(5)).await.unwrap();
    assert_eq!(m.from, NodeId(1));
    // Malformed or impossible messages are dropped (and logged), the call
    // answered, nothing reaches the core.
    let mut huge = tonic::Request::new(pb::AppendEntriesRequest {
        from: 1,
        to: ME.0,
        term: 3,
        prev: Some(pb::LogId {
            term: 1,
            index: u64::MAX,
        }),
        ..Default::default()
    });
    peer_check::to_metadata(huge.metadata_mut(), CLUSTER, params(250));
    client.append_entries(huge).await.unwrap();
    let mut own_id = tonic::Request::new(pb::RequestVoteRequest {
        from: ME.0,
        ..vote()
    });
    peer_check::to_metadata(own_id.metadata_mut(), CLUSTER, params(250));
    client.request_vote(own_id).await.unwrap();
    assert!(
        next_peer(&mut rx, Duration::from_millis(200))
            .await
            .is_none()
    );
}
