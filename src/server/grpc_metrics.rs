//! `raftkv_grpc_requests_total{service,method,code}` for the client port
//! (docs/observability.md, "gRPC requests"): a tower layer around each
//! generated tonic service that counts every answer by its gRPC status
//! code, whether the handler, tonic (a message over the size limit, an
//! unknown method) or the stream of a streaming answer produced it.
//!
//! The code is read where gRPC puts it: in the response headers for an
//! error answered at once (a "trailers-only" response), else in the
//! trailers that end the body. A call whose client went away before the
//! answer ended counts as `CANCELLED`.
//!
//! Labels are bounded: the service is the generated server's name, a method
//! not in [`METHODS`] counts as `unknown` (a client can send any path), and
//! the code is one of gRPC's 17 names.

use crate::observe::Metrics;
use prometheus::IntCounterVec;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::Code;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;

/// The client port's methods by service, as in proto/raftkv.proto (a unit
/// test holds the two together).
pub const METHODS: &[(&str, &[&str])] = &[
    ("raftkv.v1.Kv", &["Write", "Get", "Ttl", "Range"]),
    (
        "raftkv.v1.Cluster",
        &[
            "Status",
            "Members",
            "AddMember",
            "RemoveMember",
            "TransferLeader",
            "Snapshot",
        ],
    ),
    ("raftkv.v1.Auth", &["Authenticate", "Status"]),
];

/// Counts the answers of the services it wraps into `metrics`.
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    requests: IntCounterVec,
}

impl GrpcMetricsLayer {
    pub fn new(metrics: &Metrics) -> GrpcMetricsLayer {
        GrpcMetricsLayer {
            requests: metrics.grpc_requests.clone(),
        }
    }
}

impl<S: NamedService> tower::Layer<S> for GrpcMetricsLayer {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        let methods = METHODS
            .iter()
            .find(|(service, _)| *service == S::NAME)
            .map_or(&[][..], |(_, m)| m);
        Counted {
            inner,
            requests: self.requests.clone(),
            methods,
        }
    }
}

/// A tonic service whose answers are counted (see [`GrpcMetricsLayer`]).
#[derive(Clone)]
pub struct Counted<S> {
    inner: S,
    requests: IntCounterVec,
    methods: &'static [&'static str],
}

impl<S: NamedService> NamedService for Counted<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Counted<S> {
    /// The method label of a request path `/<service>/<method>`.
    fn method(&self, path: &str) -> &'static str {
        let name = path.rsplit('/').next().unwrap_or_default();
        self.methods
            .iter()
            .find(|m| **m == name)
            .copied()
            .unwrap_or("unknown")
    }
}

impl<S> Service<http::Request<Body>> for Counted<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + NamedService
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<http::Response<Body>, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let call = Call {
            requests: self.requests.clone(),
            service: S::NAME,
            method: self.method(request.uri().path()),
            done: false,
        };
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            let mut call = call;
            if let Some(code) = status_code(response.headers()) {
                call.finish(code);
                return Ok(response);
            }
            Ok(response.map(|body| Body::new(Watched { body, call })))
        })
    }
}

/// One request until its code is known; counted once, on `finish` or drop.
struct Call {
    requests: IntCounterVec,
    service: &'static str,
    method: &'static str,
    done: bool,
}

impl Call {
    fn finish(&mut self, code: Code) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        self.requests
            .with_label_values(&[self.service, self.method, code_name(code)])
            .inc();
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

/// A response body that counts its call when the trailers (or an error,
/// or the end without trailers) go by.
struct Watched {
    body: Body,
    call: Call,
}

impl http_body::Body for Watched {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, tonic::Status>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(status_code) {
                    this.call.finish(code);
                }
            }
            Poll::Ready(Some(Err(status))) => this.call.finish(status.code()),
            // gRPC always ends an answer with a status: one without is broken.
            Poll::Ready(None) => this.call.finish(Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The `grpc-status` of a header or trailer map, if it has one.
fn status_code(headers: &http::HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    Some(Code::from_i32(value.trim().parse().ok()?))
}

/// gRPC's name of `code` (as in its status code documentation).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Layer, ServiceExt};

    /// Answers as `answer` says, like a generated server would.
    #[derive(Clone)]
    struct Fake;

    impl NamedService for Fake {
        const NAME: &'static str = "raftkv.v1.Kv";
    }

    impl Service<http::Request<Body>> for Fake {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = BoxFuture<http::Response<Body>, Infallible>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, r: http::Request<Body>) -> Self::Future {
            let path = r.uri().path().to_string();
            Box::pin(async move {
                Ok(match path.as_str() {
                    "/raftkv.v1.Kv/Get" => {
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", "0".parse().unwrap());
                        let frames: Vec<Result<_, tonic::Status>> = vec![
                            Ok(http_body::Frame::data(bytes::Bytes::from_static(b"x"))),
                            Ok(http_body::Frame::trailers(trailers)),
                        ];
                        let stream = futures::stream::iter(frames);
                        http::Response::new(Body::new(http_body_util::StreamBody::new(stream)))
                    }
                    "/raftkv.v1.Kv/Write" => {
                        tonic::Status::invalid_argument("key too long").into_http()
                    }
                    _ => tonic::Status::unimplemented("no such method").into_http(),
                })
            })
        }
    }

    async fn call(svc: &Counted<Fake>, path: &str, read_body: bool) {
        let request = http::Request::builder()
            .uri(format!("http://node{path}"))
            .body(Body::empty())
            .unwrap();
        let response = svc.clone().oneshot(request).await.unwrap();
        if read_body {
            use http_body_util::BodyExt;
            response.into_body().collect().await.unwrap();
        }
    }

    fn count(m: &Metrics, method: &str, code: &str) -> u64 {
        m.grpc_requests
            .with_label_values(&["raftkv.v1.Kv", method, code])
            .get()
    }

    #[tokio::test]
    async fn answers_are_counted_by_method_and_code() {
        let m = Metrics::new();
        let svc = GrpcMetricsLayer::new(&m).layer(Fake);
        call(&svc, "/raftkv.v1.Kv/Get", true).await;
        call(&svc, "/raftkv.v1.Kv/Write", false).await;
        call(&svc, "/raftkv.v1.Kv/Write", false).await;
        call(&svc, "/raftkv.v1.Kv/NoSuchMethod-1234", false).await;
        // The client went away before the answer's trailers.
        call(&svc, "/raftkv.v1.Kv/Get", false).await;
        assert_eq!(count(&m, "Get", "OK"), 1);
        assert_eq!(count(&m, "Write", "INVALID_ARGUMENT"), 2);
        assert_eq!(count(&m, "unknown", "UNIMPLEMENTED"), 1);
        assert_eq!(count(&m, "Get", "CANCELLED"), 1);
    }

    #[test]
    fn the_method_table_is_the_proto() {
        let proto = include_str!("../../proto/raftkv.proto");
        let mut from_proto: Vec<(String, Vec<String>)> = Vec::new();
        for line in proto.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("service ") {
                let name = rest.trim_end_matches('{').trim();
                from_proto.push((format!("raftkv.v1.{name}"), Vec::new()));
            } else if let Some(rest) = line.strip_prefix("rpc ") {
                let method = rest.split('(').next().unwrap().trim();
                from_proto.last_mut().unwrap().1.push(method.to_string());
            }
        }
        let client: Vec<(String, Vec<String>)> = from_proto
            .into_iter()
            .filter(|(s, _)| s != "raftkv.v1.Raft")
            .collect();
        let table: Vec<(String, Vec<String>)> = METHODS
            .iter()
            .map(|(s, m)| (s.to_string(), m.iter().map(|x| x.to_string()).collect()))
            .collect();
        assert_eq!(table, client);
    }

    #[test]
    fn every_code_has_its_grpc_name() {
        assert_eq!(code_name(Code::from_i32(5)), "NOT_FOUND");
        assert_eq!(code_name(Code::from_i32(14)), "UNAVAILABLE");
    }
}
