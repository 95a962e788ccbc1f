//! Reaching the pods' client ports from outside the cluster: one local
//! listener per pod on 127.0.0.1, each connection tunnelled through the API
//! server (`kubectl port-forward`, via kube's `Api::portforward`). A pod
//! that is deleted and comes back under its name is reached again by the
//! next connection.
//!
//! A tunnel that fails closes its local connection, and the client only
//! sees a closed connection; why it failed (the API server's refusal, or
//! the kubelet's message on the port's error channel, such as the pod
//! refusing the connection) is kept per pod for the command to report.
//!
//! The client's bytes wait for the pod's first bytes (a raftkv node, a
//! gRPC server, speaks first: its HTTP/2 settings). The kubelet dials the
//! pod once the WebSocket is open and, if that fails, sends the reason and
//! closes; kube's forwarder stops at its first failed write, so client
//! bytes written into a tunnel the kubelet is closing would lose the
//! reason (tests/kube_forward.rs saw it in about 1 run in 10).

use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long the client's bytes wait for the pod's first bytes before they
/// go anyway (a pod that does not speak first).
const FIRST_BYTES_WAIT: Duration = Duration::from_secs(1);

use super::KubePlatform;
use super::errors::api_error;

/// Why the last tunnel of a forward failed; a tunnel that opens clears it.
type Failure = Arc<Mutex<Option<String>>>;

/// Open forwards; dropping this closes them.
#[derive(Debug, Default)]
pub struct Forwards {
    open: Vec<Forward>,
}

/// One local listener forwarded to a pod's port.
#[derive(Debug)]
struct Forward {
    pod: String,
    port: u16,
    address: String,
    failure: Failure,
    task: JoinHandle<()>,
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Forwards {
    /// The local address forwarded to `port` of pod `name`, opened on the
    /// first call for that pod and port (callers that poll, like deploy's
    /// wait, get the same listener each time).
    pub async fn add(
        &mut self,
        pods: Api<Pod>,
        name: String,
        port: u16,
    ) -> std::io::Result<String> {
        if let Some(f) = self.open.iter().find(|f| f.pod == name && f.port == port) {
            return Ok(f.address.clone());
        }
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let failure = Failure::default();
        let tunnel = Tunnel {
            pods,
            name: name.clone(),
            port,
            failure: failure.clone(),
        };
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(tunnel.clone().run(conn));
            }
        });
        self.open.push(Forward {
            pod: name,
            port,
            address: address.clone(),
            failure,
            task,
        });
        Ok(address)
    }

    /// Why the last tunnel to pod `name` failed, if it did.
    pub fn failure(&self, name: &str) -> Option<String> {
        self.open
            .iter()
            .filter(|f| f.pod == name)
            .find_map(|f| lock(&f.failure).clone())
    }
}

fn lock(failure: &Failure) -> std::sync::MutexGuard<'_, Option<String>> {
    failure
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a local connection's tunnel to a pod needs.
#[derive(Clone)]
struct Tunnel {
    pods: Api<Pod>,
    name: String,
    port: u16,
    failure: Failure,
}

impl Tunnel {
    /// Opens the tunnel, passes the pod's first bytes, then copies both
    /// ways until either end closes, keeping the reason the kubelet gives
    /// on the port's error channel before the local connection closes (so
    /// the client's error and the reason are seen together).
    async fn run(self, mut conn: TcpStream) {
        let mut forwarder = match self.pods.portforward(&self.name, &[self.port]).await {
            Ok(forwarder) => forwarder,
            Err(e) => {
                self.fail(api_error("open a port-forward", e).message);
                return;
            }
        };
        *lock(&self.failure) = None;
        let (Some(mut upstream), Some(error)) = (
            forwarder.take_stream(self.port),
            forwarder.take_error(self.port),
        ) else {
            forwarder.abort();
            return;
        };
        // Fused: it is polled again after it may have answered.
        let mut error = pin!(error.fuse());
        let mut first = vec![0u8; 16 * 1024];
        let opened = tokio::select! {
            read = upstream.read(&mut first) => match read {
                Ok(n) if n > 0 => conn.write_all(&first[..n]).await.is_ok(),
                // Closed before a byte: a reason comes before the close.
                _ => {
                    if let Some(Some(reason)) = error.as_mut().now_or_never() {
                        self.refused(&reason);
                    }
                    false
                }
            },
            Some(reason) = error.as_mut() => {
                self.refused(&reason);
                false
            }
            () = tokio::time::sleep(FIRST_BYTES_WAIT) => true,
        };
        if opened {
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream) => {}
                Some(reason) = error.as_mut() => self.refused(&reason),
            }
        }
        forwarder.abort();
    }

    /// The kubelet's reason for closing the port.
    fn refused(&self, reason: &str) {
        self.fail(format!(
            "port-forward to port {} failed: {}",
            self.port,
            reason.trim()
        ));
    }

    fn fail(&self, reason: String) {
        *lock(&self.failure) = Some(reason.replace('\n', " "));
    }
}

impl KubePlatform {
    /// Why the last port-forward to pod `name` failed, if one did.
    pub async fn forward_failure(&self, name: &str) -> Option<String> {
        self.forwards.lock().await.failure(name)
    }
}
