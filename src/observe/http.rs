//! The HTTP endpoint: `/metrics`, `/livez`, `/readyz` (hyper 1).
//!
//! Liveness and readiness are asked of a [`Health`] implementation (the node)
//! so this module knows nothing of Raft. `/livez` must never depend on quorum:
//! a probe that did would turn a network partition into a restart storm.

use super::Metrics;
use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// What the probes ask of the node.
pub trait Health: Send + Sync + 'static {
    /// Ok if the node's event loop answers (never depends on quorum).
    fn live(&self) -> BoxFuture<'_, Result<(), String>>;
    /// Ok if the node is a member, knows a leader and has applied what was committed.
    fn ready(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// Serves the endpoint on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    health: Arc<dyn Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "http accept failed");
                    continue;
                }
            },
        };
        let metrics = metrics.clone();
        let health = health.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let metrics = metrics.clone();
                let health = health.clone();
                async move { Ok::<_, std::convert::Infallible>(route(req, &metrics, &*health).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Binds `addr` (so a port conflict is a startup error, not a later warning).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

async fn route(
    req: Request<Incoming>,
    metrics: &Metrics,
    health: &dyn Health,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => Response::builder()
            .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
            .body(Full::new(Bytes::from(metrics.encode())))
            .expect("static response"),
        "/livez" => probe(health.live().await),
        "/readyz" => probe(health.ready().await),
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

fn probe(result: Result<(), String>) -> Response<Full<Bytes>> {
    match result {
        Ok(()) => text(StatusCode::OK, "ok\n".into()),
        Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .expect("static response")
}
