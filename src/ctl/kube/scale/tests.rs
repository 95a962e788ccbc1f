//! The StatefulSet operations of `raftctl scale` against a `tower-test`
//! mock API server: each request's method, path and body, and the answers
//! (a claim that exists or not, a deletion of one already gone).

use std::pin::pin;

use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;

use super::*;
use crate::ctl::platform::Platform;

const SCALE: &str = "/apis/apps/v1/namespaces/db/statefulsets/kv/scale?&fieldManager=raftctl";
const CLAIM: &str = "/api/v1/namespaces/db/persistentvolumeclaims/data-kv-3";
const DELETE_CLAIM: &str = "/api/v1/namespaces/db/persistentvolumeclaims/data-kv-3?";

/// Plays `exchanges` (method, path and query, expected body or null,
/// answer status, answer) on a mock API server behind a platform.
fn mock_platform(
    exchanges: Vec<(Method, &'static str, Value, u16, Value)>,
) -> (KubePlatform, tokio::task::JoinHandle<()>) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(async move {
        let mut handle = pin!(handle);
        for (method, uri, body, status, answer) in exchanges {
            let (request, send) = handle.next_request().await.expect("a request");
            assert_eq!(
                (request.method(), request.uri().to_string()),
                (&method, uri.to_string())
            );
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let sent: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            assert_eq!(sent, body, "{method} {uri}");
            let response = Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap();
            send.send_response(response);
        }
    });
    let client = kube::Client::new(service, "db");
    (
        KubePlatform::new(client, "db".into(), "kv".into(), true),
        server,
    )
}

fn scale_answer(replicas: i32) -> Value {
    json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "kv"},
           "spec": {"replicas": replicas}})
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": "not found", "reason": "NotFound", "code": 404})
}

#[tokio::test]
async fn starting_and_stopping_an_ordinal_sets_the_replica_count_around_it() {
    let (platform, server) = mock_platform(vec![
        (
            Method::PATCH,
            SCALE,
            json!({"spec": {"replicas": 4}}),
            200,
            scale_answer(4),
        ),
        (
            Method::PATCH,
            SCALE,
            json!({"spec": {"replicas": 3}}),
            200,
            scale_answer(3),
        ),
    ]);
    platform.start_pod(3).await.unwrap();
    platform.stop_pod(3).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn the_volume_claim_is_the_retained_data() {
    let claim = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                       "metadata": {"name": "data-kv-3", "namespace": "db"}});
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"});
    let (platform, server) = mock_platform(vec![
        (Method::GET, CLAIM, Value::Null, 200, claim.clone()),
        (Method::GET, CLAIM, Value::Null, 404, not_found()),
        (Method::DELETE, DELETE_CLAIM, json!({}), 200, status),
        (Method::DELETE, DELETE_CLAIM, json!({}), 404, not_found()),
        (
            Method::GET,
            CLAIM,
            Value::Null,
            403,
            json!({"kind": "Status", "apiVersion": "v1",
            "metadata": {}, "status": "Failure", "message": "no", "reason": "Forbidden", "code": 403}),
        ),
    ]);
    assert_eq!(
        platform.retained_data(3).await.unwrap().as_deref(),
        Some("persistentvolumeclaim/data-kv-3")
    );
    assert_eq!(platform.retained_data(3).await.unwrap(), None);
    platform.delete_data(3).await.unwrap();
    // Already gone: nothing to do.
    platform.delete_data(3).await.unwrap();
    let e = platform.retained_data(3).await.unwrap_err();
    assert!(e.message.contains("persistentvolumeclaim data-kv-3"), "{e}");
    server.await.unwrap();
}
