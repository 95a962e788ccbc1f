//! The answers a Kubernetes API server stand-in gives: a JSON body, and
//! the `Status` object the API returns for a failure (what kube-rs reads
//! as an `ErrorResponse`).

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

/// `body` as JSON with `status`.
pub fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// A failed request, as the API server words it.
pub fn failure(status: StatusCode, reason: &str, message: &str) -> Response<Full<Bytes>> {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": status.as_u16()
    });
    json_response(status, &body)
}
