//! A Kubernetes API server stand-in for the StatefulSet on Docker, enough
//! for `raftctl scale --platform kube` run in a container (the scale-down
//! hook): it lists the stand-in's pods for a label selector, applies a
//! merge patch of the StatefulSet's scale subresource as the StatefulSet
//! controller would (deleting the pods at ordinals >= replicas, highest
//! first, each with its grace period) and answers for the volume claims
//! `data-<sts>-N` that exist (the stand-in keeps every volume). Every
//! request is recorded. It listens on the Docker network's gateway, plain
//! HTTP: the container reaches it through a kubeconfig (the stand-in for
//! the service account's credentials), with KUBERNETES_SERVICE_HOST set so
//! raftctl knows it runs in a cluster.

use super::sts::StatefulSet;
use crate::common::kube_answers::{failure, json_response};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// The labels the chart gives the stand-in's pods (its StatefulSet's
/// selector), as the pod list returns them.
pub type Labels = BTreeMap<String, String>;

struct State {
    sts: Arc<StatefulSet>,
    labels: Labels,
    requests: Mutex<Vec<String>>,
}

pub struct FakeApi {
    pub address: SocketAddr,
    state: Arc<State>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl FakeApi {
    /// Serves `sts`, whose pods carry `labels`, on its network's gateway.
    pub fn start(sts: Arc<StatefulSet>, labels: Labels) -> FakeApi {
        let gateway = crate::common::docker::must(&[
            "network",
            "inspect",
            "-f",
            "{{(index .IPAM.Config 0).Gateway}}",
            &sts.network,
        ]);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(State {
            sts,
            labels,
            requests: Mutex::new(Vec::new()),
        });
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind((gateway.as_str(), 0)))
            .unwrap();
        let address = listener.local_addr().unwrap();
        let served = state.clone();
        runtime.spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let state = served.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(req, state).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(conn), service)
                        .await;
                });
            }
        });
        FakeApi {
            address,
            state,
            runtime: Some(runtime),
        }
    }

    /// A kubeconfig naming this server, namespace `default`, and a CA file
    /// at `ca_path` (as the service account's ca.crt: the client loads its
    /// roots from it rather than from the system, which the image lacks;
    /// unused over plain HTTP).
    pub fn kubeconfig(&self, ca_path: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\n\
             clusters:\n- name: fake\n  cluster:\n    server: http://{}\n    certificate-authority: {ca_path}\n\
             users:\n- name: hook\n  user: {{}}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: hook\n    namespace: {}\n\
             current-context: fake\n",
            self.address,
            super::pod::NAMESPACE
        )
    }

    /// Every request so far, "METHOD path?query [body]".
    pub fn requests(&self) -> Vec<String> {
        self.state.requests.lock().unwrap().clone()
    }
}

/// Whether `labels` satisfy a label selector query (`k=v,k=v`).
fn selects(query: &str, labels: &Labels) -> bool {
    query.split(',').all(|term| match term.split_once('=') {
        Some((k, v)) => labels.get(k).map(String::as_str) == Some(v),
        None => false,
    })
}

async fn answer(req: Request<Incoming>, state: Arc<State>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query: BTreeMap<String, String> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect();
    let uri = req.uri().to_string();
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    let body = body.unwrap_or_default();
    state
        .requests
        .lock()
        .unwrap()
        .push(format!("{method} {uri} {}", String::from_utf8_lossy(&body)));
    let ns = super::pod::NAMESPACE;
    let sts_name = state.sts.template.statefulset.clone();
    if method == hyper::Method::GET && path == format!("/api/v1/namespaces/{ns}/pods") {
        let selector = query.get("labelSelector").cloned().unwrap_or_default();
        let items: Vec<Value> = if selects(&selector, &state.labels) {
            state
                .sts
                .ordinals()
                .into_iter()
                .map(|i| pod(&state.sts.template.pod_name(i), &state.labels))
                .collect()
        } else {
            Vec::new()
        };
        return json_response(
            StatusCode::OK,
            &json!({"apiVersion": "v1", "kind": "PodList",
                    "metadata": {"resourceVersion": "1"}, "items": items}),
        );
    }
    if method == hyper::Method::PATCH
        && path == format!("/apis/apps/v1/namespaces/{ns}/statefulsets/{sts_name}/scale")
    {
        let patch: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let Some(replicas) = patch["spec"]["replicas"].as_u64() else {
            return failure(StatusCode::BAD_REQUEST, "BadRequest", "no spec.replicas");
        };
        // The StatefulSet controller: pods above the count go, highest
        // ordinal first; pods below it would be started (not needed here).
        let sts = state.sts.clone();
        tokio::task::spawn_blocking(move || {
            for i in sts.ordinals().into_iter().rev() {
                if i >= replicas {
                    sts.delete(i);
                }
            }
        })
        .await
        .unwrap();
        return json_response(
            StatusCode::OK,
            &json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
                    "metadata": {"name": sts_name, "namespace": ns},
                    "spec": {"replicas": replicas}, "status": {"replicas": replicas}}),
        );
    }
    let claims = format!("/api/v1/namespaces/{ns}/persistentvolumeclaims/data-{sts_name}-");
    if method == hyper::Method::GET {
        if let Some(ordinal) = path.strip_prefix(&claims) {
            return json_response(
                StatusCode::OK,
                &json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "metadata": {"name": format!("data-{sts_name}-{ordinal}"), "namespace": ns},
                        "spec": {"accessModes": ["ReadWriteOnce"]}}),
            );
        }
    }
    failure(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
    )
}

fn pod(name: &str, labels: &Labels) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": super::pod::NAMESPACE, "labels": labels},
        "spec": {"containers": [{"name": "raftkv"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
