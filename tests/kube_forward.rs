//! `raftctl status --platform kube` through a real port-forward tunnel: a
//! fake Kubernetes API server on 127.0.0.1 answers the pod list and, for each
//! pod's `portforward` subresource, upgrades to a WebSocket speaking the
//! kubelet's port-forward subprotocol (`v4.channel.k8s.io`) and pipes the
//! data channel to a real raftkv node. raftctl runs as a user runs it, with a
//! kubeconfig whose server is the fake, so everything from kube's HTTP
//! upgrade to the gRPC bytes in the tunnel is the code that runs against a
//! real cluster. (tests/raftctl_kube.rs checks the requests with a mock that
//! cannot upgrade.)
//!
//! The subprotocol, as the kubelet speaks it: every binary frame starts with
//! its channel byte, channel 0 carries the port's data and channel 1 its
//! error; the first frame on each channel is the port, 2 bytes little-endian.
//! The kubelet dials the pod's port once the WebSocket is open; if that
//! fails it writes the reason on the error channel and closes.

mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::cluster::Cluster;
use common::ctl::Ctl;
use common::kube_answers::{failure, json_response};
use common::wait::wait_for_async;
use futures::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

const NAMESPACE: &str = "db";
const CLIENT_PORT: u16 = 7379;
const SUBPROTOCOL: &str = "v4.channel.k8s.io";
const PODS: &str = "/api/v1/namespaces/db/pods";
/// The label selector raftctl lists the StatefulSet's pods with.
const SELECTOR: &str =
    "&labelSelector=app.kubernetes.io%2Fname%3Draftkv%2Capp.kubernetes.io%2Finstance%3Draftkv";

/// What went through one pod's tunnels.
#[derive(Debug, Default, Clone, Copy)]
struct Traffic {
    tunnels: usize,
    to_pod: usize,
    from_pod: usize,
}

#[derive(Default)]
struct State {
    /// Pod name -> the address its client port really is; None: the API
    /// server forbids port-forwarding to it.
    backends: BTreeMap<String, Option<SocketAddr>>,
    /// Every request, "METHOD path?query".
    requests: Mutex<Vec<String>>,
    traffic: Mutex<BTreeMap<String, Traffic>>,
}

/// The fake API server; stops when dropped.
struct FakeApi {
    address: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeApi {
    async fn start(backends: BTreeMap<String, Option<SocketAddr>>) -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let state = Arc::new(State {
            backends,
            ..State::default()
        });
        let served = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let state = served.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(req, state)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(conn), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        FakeApi {
            address,
            state,
            task,
        }
    }

    /// A kubeconfig whose current context is this server, namespace `db`,
    /// no credentials.
    fn kubeconfig(&self, dir: &Path) -> std::path::PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\n\
             clusters:\n- name: fake\n  cluster:\n    server: http://{}\n\
             users:\n- name: nobody\n  user: {{}}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: nobody\n    namespace: {NAMESPACE}\n\
             current-context: fake\n",
            self.address
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    fn requests(&self) -> Vec<String> {
        self.state.requests.lock().unwrap().clone()
    }

    fn traffic(&self) -> BTreeMap<String, Traffic> {
        self.state.traffic.lock().unwrap().clone()
    }
}

fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"nodeName": "worker", "containers": [{"name": "raftkv"}]},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{
                "name": "raftkv", "ready": true, "restartCount": 0, "image": "raftkv:test",
                "imageID": "", "started": true
            }]
        }
    })
}

/// The API server's answer to one request.
fn answer(req: Request<Incoming>, state: Arc<State>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    state
        .requests
        .lock()
        .unwrap()
        .push(format!("{} {}", req.method(), req.uri()));
    if path == PODS && req.method() == hyper::Method::GET {
        if query != SELECTOR {
            return failure(StatusCode::BAD_REQUEST, "BadRequest", "unexpected query");
        }
        let items: Vec<Value> = state.backends.keys().map(|name| pod(name)).collect();
        let list = json!({"apiVersion": "v1", "kind": "PodList",
                          "metadata": {"resourceVersion": "1"}, "items": items});
        return json_response(StatusCode::OK, &list);
    }
    let forward = path
        .strip_prefix(PODS)
        .and_then(|p| p.strip_prefix('/'))
        .and_then(|p| p.strip_suffix("/portforward"));
    match forward {
        Some(name) => port_forward(req, name.to_string(), &query, state),
        None => failure(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        ),
    }
}

/// `pods/NAME/portforward?ports=P`: the WebSocket upgrade, then the tunnel.
fn port_forward(
    mut req: Request<Incoming>,
    name: String,
    query: &str,
    state: Arc<State>,
) -> Response<Full<Bytes>> {
    let backend = match state.backends.get(&name) {
        Some(Some(backend)) => *backend,
        Some(None) => {
            return failure(
                StatusCode::FORBIDDEN,
                "Forbidden",
                &format!(
                    "pods \"{name}\" is forbidden: User \"dev\" cannot create resource \"pods/portforward\" in API group \"\" in the namespace \"{NAMESPACE}\""
                ),
            );
        }
        None => {
            return failure(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("pods \"{name}\" not found"),
            );
        }
    };
    let ports: Vec<u16> = query
        .split('&')
        .filter_map(|kv| kv.strip_prefix("ports="))
        .flat_map(|p| p.split("%2C").map(|p| p.parse().unwrap_or(0)))
        .collect();
    if ports != [CLIENT_PORT] {
        return failure(StatusCode::BAD_REQUEST, "BadRequest", "unexpected ports");
    }
    let header = |h: &str| {
        req.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let offered = header("sec-websocket-protocol");
    if !header("upgrade").eq_ignore_ascii_case("websocket")
        || !offered.split(',').any(|p| p.trim() == SUBPROTOCOL)
    {
        return failure(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("a {SUBPROTOCOL} WebSocket upgrade is required, got {offered:?}"),
        );
    }
    let accept = derive_accept_key(header("sec-websocket-key").as_bytes());
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        tunnel(ws, &name, backend, &state).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-accept", accept)
        .header("sec-websocket-protocol", SUBPROTOCOL)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// One frame of `channel`.
fn frame(channel: u8, payload: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(payload.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(payload);
    Message::binary(bytes)
}

/// The kubelet's side: announce the port on both channels, dial the pod,
/// then pipe channel 0 both ways (or report the failed dial on channel 1).
async fn tunnel<S>(mut ws: WebSocketStream<S>, name: &str, backend: SocketAddr, state: &State)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let port = CLIENT_PORT.to_le_bytes();
    if ws.send(frame(0, &port)).await.is_err() || ws.send(frame(1, &port)).await.is_err() {
        return;
    }
    let pod = match TcpStream::connect(backend).await {
        Ok(pod) => pod,
        Err(e) => {
            let reason = format!(
                "error forwarding port {CLIENT_PORT} to pod {name}, uid : failed to execute portforward in network namespace: dial tcp {backend}: connect: {e}"
            );
            let _ = ws.send(frame(1, reason.as_bytes())).await;
            let _ = ws.close(None).await;
            return;
        }
    };
    state
        .traffic
        .lock()
        .unwrap()
        .entry(name.to_string())
        .or_default()
        .tunnels += 1;
    let count = |f: &dyn Fn(&mut Traffic)| {
        f(state.traffic.lock().unwrap().get_mut(name).unwrap());
    };
    let (mut from_pod, mut to_pod) = pod.into_split();
    let (mut sink, mut stream) = ws.split();
    let upstream = async {
        while let Some(Ok(message)) = stream.next().await {
            match message {
                Message::Binary(bytes) if bytes.first() == Some(&0) => {
                    count(&|t| t.to_pod += bytes.len() - 1);
                    if to_pod.write_all(&bytes[1..]).await.is_err() {
                        break;
                    }
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = to_pod.shutdown().await;
    };
    let downstream = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match from_pod.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    count(&|t| t.from_pod += n);
                    if sink.send(frame(0, &buf[..n])).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = sink.close().await;
    };
    // Either end closing ends the tunnel, as the kubelet's handler does.
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}

/// raftctl with `--platform kube --kubeconfig K`, as a user outside the
/// cluster runs it: nothing from this machine's environment picks another
/// cluster or a proxy.
fn kube_ctl(kubeconfig: &Path) -> Ctl {
    let mut ctl = Ctl::new()
        .tail(["--platform", "kube", "--kubeconfig"])
        .tail([kubeconfig]);
    for key in [
        "KUBERNETES_SERVICE_HOST",
        "KUBECONFIG",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        ctl = ctl.env_remove(key);
    }
    ctl
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reaches_real_nodes_through_port_forward_tunnels() {
    let cluster = Cluster::start("kube_forward", 3);
    let leader = cluster.leader(&[0, 1, 2], Duration::from_secs(20)).await;
    wait_for_async("the leader's lease", Duration::from_secs(10), || async {
        cluster
            .status(leader)
            .await
            .filter(|s| s.lease_remaining_seconds > 0.0)
    })
    .await;
    let backends = (0..3)
        .map(|i| {
            let address = cluster.nodes[i].client.parse().unwrap();
            (format!("raftkv-{i}"), Some(address))
        })
        .collect();
    let api = FakeApi::start(backends).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());

    let kube = kube_ctl(&kubeconfig);
    let table = kube.run_async(&["status"]).await.ok().stdout;
    // What the nodes say of themselves, asked directly after raftctl did.
    let mut truth = Vec::new();
    for i in 0..3 {
        truth.push(cluster.status(i).await.expect("node answers"));
    }
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(
        lines[0].starts_with("POD       PHASE    READY  RESTARTS  NODE    ROLE"),
        "{table}"
    );
    for (i, line) in lines[1..].iter().enumerate() {
        let cells: Vec<&str> = line.split_whitespace().collect();
        let real = &truth[i];
        assert_eq!(
            cells[..5],
            [
                format!("raftkv-{i}").as_str(),
                "Running",
                "yes",
                "0",
                "worker"
            ],
            "{table}"
        );
        assert_eq!(cells[5], real.role, "pod raftkv-{i}'s role\n{table}");
        assert_eq!(
            cells[6],
            real.term.to_string(),
            "pod raftkv-{i}'s term\n{table}"
        );
        assert_eq!(
            cells[7],
            real.leader.map_or("-".into(), |l| l.to_string()),
            "pod raftkv-{i}'s leader\n{table}"
        );
    }
    assert_eq!(truth[leader].role, "leader");

    // The JSON rows name the node behind each pod: pod raftkv-i's tunnel
    // reached node i, not just some node.
    let json = kube.run_async(&["status", "-o", "json"]).await.ok().stdout;
    let rows: Value = serde_json::from_str(&json).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{json}");
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["pod"], format!("raftkv-{i}"), "{json}");
        assert_eq!(row["raft"]["id"], i as u64, "{json}");
        assert_eq!(row["raft"]["address"], cluster.nodes[i].client, "{json}");
        assert_eq!(row["raft"]["leader"], leader as u64, "{json}");
        assert!(row["raft"]["error"].is_null(), "{json}");
    }

    // Every pod was reached through its own tunnel, bytes both ways, and
    // raftctl asked the API server for nothing else.
    let traffic = api.traffic();
    assert_eq!(traffic.len(), 3, "{traffic:?}");
    for (pod, t) in &traffic {
        assert!(t.tunnels >= 2, "{pod}: one tunnel per run at least: {t:?}");
        assert!(t.to_pod > 0 && t.from_pod > 0, "{pod}: {t:?}");
    }
    for request in api.requests() {
        let forward = (0..3)
            .any(|i| request == format!("GET {PODS}/raftkv-{i}/portforward?&ports={CLIENT_PORT}"));
        assert!(
            forward || request == format!("GET {PODS}?{SELECTOR}"),
            "unexpected request {request}"
        );
    }
}

/// Tunnels that cannot open: the pod refuses the connection (the kubelet's
/// error channel says so), or the API server forbids the port-forward.
/// raftctl says why for each pod on one line, with exit 2 (unreachable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_tunnels_are_one_clear_error_line() {
    // A port bound but not listening: connecting to it is refused, and no
    // other process can take it meanwhile.
    let closed = TcpSocket::new_v4().unwrap();
    closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let refused = closed.local_addr().unwrap();
    let backends = [
        ("raftkv-0".to_string(), Some(refused)),
        ("raftkv-1".to_string(), None),
    ];
    let api = FakeApi::start(backends.into()).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());

    // Exit 2: unreachable.
    let out = kube_ctl(&kubeconfig).run_async(&["status"]).await.expect(2);
    let (table, stderr) = (out.stdout, out.stderr);
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{table}");
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells[..6],
            [
                format!("raftkv-{i}").as_str(),
                "Running",
                "yes",
                "0",
                "worker",
                "unreachable"
            ],
            "{table}"
        );
    }
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {stderr}");
    let line = lines[0];
    let (_, refusal) = line
        .split_once("raftkv-0: port-forward to port 7379 failed: ")
        .unwrap_or_else(|| panic!("names pod 0 and its tunnel: {line}"));
    assert!(
        refusal.starts_with("error forwarding port 7379 to pod raftkv-0"),
        "the kubelet's words: {line}"
    );
    assert!(
        refusal.contains(&format!("dial tcp {refused}: connect: Connection refused")),
        "gives the kubelet's reason: {line}"
    );
    assert!(
        line.contains(
            "raftkv-1: cannot open a port-forward: Forbidden: your user lacks the RBAC permission"
        ),
        "names pod 1 and the API server's refusal: {line}"
    );
    assert!(
        line.contains("cannot create resource \"pods/portforward\""),
        "{line}"
    );
    assert!(api.traffic().is_empty(), "{:?}", api.traffic());
}

/// A forward outlives its pod's restarts: while the node is down each
/// connection's tunnel fails and the reason is kept; once the node is back
/// the same local listener reaches it and the reason is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_reaches_its_pod_again_after_a_restart() {
    use raftkv::client::{Client, ClientOptions};
    use raftkv::ctl::kube::{KubePlatform, client_config};

    let mut cluster = Cluster::start("kube_forward_restart", 1);
    cluster.leader(&[0], Duration::from_secs(20)).await;
    let node = cluster.nodes[0].client.parse().unwrap();
    let api = FakeApi::start([("raftkv-0".to_string(), Some(node))].into()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = client_config(Some(&api.kubeconfig(dir.path())), None)
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let platform = KubePlatform::new(client, NAMESPACE.into(), "raftkv".into(), false);
    let endpoints = platform.endpoints_for(1).await.unwrap();
    let probe = Client::lazy(
        endpoints.clone(),
        ClientOptions::default().with_timeout(Duration::from_secs(2)),
    )
    .unwrap();
    let status = probe.status(&endpoints[0]).await.unwrap();
    assert_eq!(status.id, 0);

    cluster.kill(0);
    // The open connection's tunnel just closes (no reason: nothing failed
    // to open); a later connection's tunnel is refused, with the reason.
    wait_for_async("a refused tunnel", Duration::from_secs(10), || async {
        let refused = probe.status(&endpoints[0]).await.is_err()
            && platform.forward_failure("raftkv-0").await.is_some();
        refused.then_some(())
    })
    .await;
    let reason = platform.forward_failure("raftkv-0").await;
    assert!(
        reason.as_deref().is_some_and(|r| r
            .starts_with("port-forward to port 7379 failed: error forwarding")
            && r.contains("Connection refused")),
        "{reason:?}"
    );

    cluster.spawn(0);
    wait_for_async(
        "node 0 through its forward",
        Duration::from_secs(20),
        || async { probe.status(&endpoints[0]).await.ok().map(drop) },
    )
    .await;
    assert_eq!(platform.forward_failure("raftkv-0").await, None);
    assert_eq!(platform.endpoints_for(1).await.unwrap(), endpoints);
    assert!(
        api.traffic()["raftkv-0"].tunnels >= 2,
        "{:?}",
        api.traffic()
    );
}
