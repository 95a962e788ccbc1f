//! Reaching the pods' client ports from outside the cluster: one local
//! listener per pod on 127.0.0.1, each connection tunnelled through the API
//! server (`kubectl port-forward`, via kube's `Api::portforward`). A pod
//! that is deleted and comes back under its name is reached again by the
//! next connection.

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Open forwards; dropping this closes them.
#[derive(Debug, Default)]
pub struct Forwards {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Forwards {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Forwards {
    /// Forwards a local port to `port` of pod `name`; the local address.
    pub async fn add(
        &mut self,
        pods: Api<Pod>,
        name: String,
        port: u16,
    ) -> std::io::Result<String> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        self.tasks.push(tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let pods = pods.clone();
                let name = name.clone();
                tokio::spawn(async move {
                    // A failed tunnel closes the connection: the client
                    // sees the pod as unreachable and tries another.
                    let Ok(mut forwarder) = pods.portforward(&name, &[port]).await else {
                        return;
                    };
                    if let Some(mut upstream) = forwarder.take_stream(port) {
                        let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
                    }
                    forwarder.abort();
                });
            }
        }));
        Ok(address)
    }
}
