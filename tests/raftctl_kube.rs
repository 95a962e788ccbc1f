//! raftctl's Kubernetes calls against a mock API server (a `tower-test`
//! service behind `kube::Client`, as kube-rs tests its own client): each
//! test scripts the requests raftctl must send, in order, asserts method,
//! path, query and body of each, and answers as the API server would.

use std::pin::pin;

use http::{Method, Request, Response};
use kube::client::Body;
use raftkv::ctl::exit::Exit;
use raftkv::ctl::kube::deploy::Existing;
use raftkv::ctl::kube::manifests::Manifests;
use raftkv::ctl::kube::{KubePlatform, deploy, scale, status};
use raftkv::ctl::platform::pod::{TlsValues, Values};
use raftkv::ctl::platform::{Grace, Platform};
use serde_json::{Value, json};
use tower_test::mock;

/// Asserts on a request's headers and JSON body.
type Check = Box<dyn Fn(&http::HeaderMap, &Value) + Send>;

/// One expected request and the answer to it.
struct Step {
    method: Method,
    /// Path and query, exactly.
    uri: String,
    /// Checks the request's JSON body (and may look at headers).
    check: Check,
    status: u16,
    answer: Value,
}

fn step(method: Method, uri: impl Into<String>, status: u16, answer: Value) -> Step {
    Step {
        method,
        uri: uri.into(),
        check: Box::new(|_, _| {}),
        status,
        answer,
    }
}

impl Step {
    /// Adds `check` after the step's checks so far.
    fn checking(mut self, check: impl Fn(&http::HeaderMap, &Value) + Send + 'static) -> Step {
        let before = self.check;
        self.check = Box::new(move |headers, body| {
            before(headers, body);
            check(headers, body);
        });
        self
    }
}

fn not_found(what: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("{what} not found"), "reason": "NotFound", "code": 404
    })
}

fn failure(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code
    })
}

/// A platform on a mock API server that plays `steps`; the join handle
/// panics if a request differs from its step or a step is left over.
fn mock_platform(steps: Vec<Step>) -> (KubePlatform, tokio::task::JoinHandle<()>) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(async move {
        let mut handle = pin!(handle);
        for (i, step) in steps.into_iter().enumerate() {
            let (request, send) = handle
                .next_request()
                .await
                .unwrap_or_else(|| panic!("step {i}: no request for {} {}", step.method, step.uri));
            assert_eq!(request.method(), step.method, "step {i}: {}", request.uri());
            assert_eq!(request.uri().to_string(), step.uri, "step {i}");
            let headers = request.headers().clone();
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body: Value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).expect("a JSON body")
            };
            (step.check)(&headers, &body);
            let response = Response::builder()
                .status(step.status)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&step.answer).unwrap()))
                .unwrap();
            send.send_response(response);
        }
    });
    let client = kube::Client::new(service, "db");
    // In-cluster addressing: no port-forward (the mock speaks no WebSocket).
    let platform = KubePlatform::new(client, "db".into(), "raftkv".into(), true);
    (platform, server)
}

fn values(replicas: i32) -> Values {
    Values {
        name: "raftkv".into(),
        namespace: "db".into(),
        replicas,
        image: "raftkv:test".into(),
        storage_size: "1Gi".into(),
        storage_class: None,
        tls: None,
    }
}

const STS: &str = "/apis/apps/v1/namespaces/db/statefulsets/raftkv";
const HEADLESS: &str = "/api/v1/namespaces/db/services/raftkv-headless";
const CLIENT: &str = "/api/v1/namespaces/db/services/raftkv";
const PDB: &str = "/apis/policy/v1/namespaces/db/poddisruptionbudgets/raftkv";
const APPLY: &str = "?&fieldManager=raftctl";

/// The object as the API server returns it after an apply.
fn stored(object: &Value, resource_version: &str) -> Value {
    let mut object = object.clone();
    object["metadata"]["resourceVersion"] = json!(resource_version);
    object
}

fn objects(replicas: i32) -> [(String, Value); 4] {
    objects_of(&values(replicas))
}

fn objects_of(values: &Values) -> [(String, Value); 4] {
    let m = Manifests::new(values);
    [
        (
            HEADLESS.to_string(),
            serde_json::to_value(&m.headless).unwrap(),
        ),
        (CLIENT.to_string(), serde_json::to_value(&m.client).unwrap()),
        (PDB.to_string(), serde_json::to_value(&m.budget).unwrap()),
        (
            STS.to_string(),
            serde_json::to_value(&m.statefulset).unwrap(),
        ),
    ]
}

/// GET then server-side apply of each object; `before` is what the GET finds.
fn apply_steps(replicas: i32, before: Option<&str>, after: &str) -> Vec<Step> {
    apply_steps_of(&values(replicas), before, after)
}

fn apply_steps_of(values: &Values, before: Option<&str>, after: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    for (path, object) in objects_of(values) {
        steps.push(match before {
            None => step(Method::GET, path.clone(), 404, not_found(&path)),
            Some(rv) => step(Method::GET, path.clone(), 200, stored(&object, rv)),
        });
        let expected = object.clone();
        steps.push(
            step(
                Method::PATCH,
                format!("{path}{APPLY}"),
                200,
                stored(&object, after),
            )
            .checking(move |headers, body| {
                assert_eq!(
                    headers["content-type"], "application/apply-patch+yaml",
                    "server-side apply"
                );
                assert_eq!(body, &expected, "the applied object");
            }),
        );
    }
    steps
}

#[tokio::test]
async fn deploy_creates_every_object_by_server_side_apply() {
    let mut steps = vec![step(
        Method::GET,
        STS,
        404,
        not_found("statefulsets.apps \"raftkv\""),
    )];
    steps.extend(apply_steps(3, None, "1"));
    let (platform, server) = mock_platform(steps);
    let existing = deploy::existing(&platform).await.unwrap();
    assert_eq!(existing, None);
    let (values, replicas) = deploy::reconcile(values(3), Some(3), existing).unwrap();
    assert_eq!(replicas, 3);
    let applied = deploy::apply(&platform, &Manifests::new(&values))
        .await
        .unwrap();
    let summary: Vec<String> = applied
        .iter()
        .map(|a| format!("{} {}", a.object, a.action))
        .collect();
    assert_eq!(
        summary,
        [
            "service/raftkv-headless created",
            "service/raftkv created",
            "poddisruptionbudget.policy/raftkv created",
            "statefulset.apps/raftkv created"
        ]
    );
    server.await.unwrap();
}

/// `deploy --tls-secret`: the applied StatefulSet mounts the Secret and
/// starts the node with TLS on both ports; the Services and the budget are
/// those of a plaintext deploy.
#[tokio::test]
async fn a_tls_deploy_applies_the_secret_mount_and_the_node_tls_settings() {
    let tls = Values {
        tls: Some(TlsValues {
            secret: "raftkv-members".into(),
            client_cert_auth: true,
        }),
        ..values(3)
    };
    let mut steps = vec![step(
        Method::GET,
        STS,
        404,
        not_found("statefulsets.apps \"raftkv\""),
    )];
    steps.extend(apply_steps_of(&tls, None, "1"));
    // What the API server receives, beyond equality with the typed object.
    let sts_apply = steps.pop().unwrap();
    let plain_sts = objects(3)[3].1.clone();
    steps.push(sts_apply.checking(move |_, body| {
        let pod = &body["spec"]["template"]["spec"];
        assert_eq!(
            pod["volumes"],
            json!([{"name": "tls", "secret": {"secretName": "raftkv-members", "defaultMode": 0o440}}])
        );
        let c = &pod["containers"][0];
        assert!(
            c["volumeMounts"]
                .as_array()
                .unwrap()
                .contains(&json!({"name": "tls", "mountPath": "/etc/raftkv-tls", "readOnly": true})),
            "{c}"
        );
        let env = |name: &str| {
            c["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == name)
                .map(|e| e["value"].clone())
        };
        assert_eq!(env("RAFTKV_CERT_FILE"), Some(json!("/etc/raftkv-tls/tls.crt")));
        assert_eq!(env("RAFTKV_PEER_TRUSTED_CA_FILE"), Some(json!("/etc/raftkv-tls/ca.crt")));
        assert_eq!(env("RAFTKV_CLIENT_CERT_AUTH"), Some(json!("true")));
        let plain = &plain_sts["spec"]["template"]["spec"]["containers"][0];
        for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
            assert_eq!(c[probe], plain[probe], "{probe}: plain HTTP as without TLS");
        }
    }));
    for (i, (_, plain)) in objects(3).into_iter().take(3).enumerate() {
        assert_eq!(objects_of(&tls)[i].1, plain, "only the StatefulSet changes");
    }
    let (platform, server) = mock_platform(steps);
    let existing = deploy::existing(&platform).await.unwrap();
    let (values, _) = deploy::reconcile(tls.clone(), Some(3), existing).unwrap();
    let applied = deploy::apply(&platform, &Manifests::new(&values))
        .await
        .unwrap();
    assert_eq!(applied.len(), 4);
    assert!(applied.iter().all(|a| a.action == "created"), "{applied:?}");
    server.await.unwrap();
}

#[tokio::test]
async fn a_second_deploy_changes_nothing_and_keeps_the_founders() {
    // The StatefulSet was scaled to 1 since: deploy keeps 1 replica and the
    // founding count 3 in the template.
    let mut sts = objects(3)[3].1.clone();
    sts["spec"]["replicas"] = json!(1);
    let mut steps = vec![step(Method::GET, STS, 200, stored(&sts, "7"))];
    steps.extend(apply_steps(3, Some("7"), "7"));
    let (platform, server) = mock_platform(steps);
    let existing = deploy::existing(&platform).await.unwrap();
    assert_eq!(
        existing,
        Some(Existing {
            replicas: 1,
            founders: 3,
            tls: None
        })
    );
    let (values, replicas) = deploy::reconcile(values(3), None, existing).unwrap();
    assert_eq!((values.replicas, replicas), (3, 1));
    let applied = deploy::apply(&platform, &Manifests::new(&values))
        .await
        .unwrap();
    assert!(
        applied.iter().all(|a| a.action == "unchanged"),
        "{applied:?}"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn deploy_refuses_to_change_the_replica_count() {
    let sts = objects(3)[3].1.clone();
    let (platform, server) = mock_platform(vec![step(Method::GET, STS, 200, stored(&sts, "7"))]);
    let existing = deploy::existing(&platform).await.unwrap();
    let e = deploy::reconcile(values(5), Some(5), existing).unwrap_err();
    assert_eq!(e.exit, Exit::BadInput);
    assert!(e.message.contains("raftctl scale 5"), "{e}");
    server.await.unwrap();
}

fn with_tls(secret: &str) -> Values {
    Values {
        tls: Some(TlsValues {
            secret: secret.into(),
            client_cert_auth: true,
        }),
        ..values(3)
    }
}

/// A deploy that would turn TLS off (a forgotten `--tls-secret`) or on in
/// place is refused after reading the StatefulSet, before applying
/// anything: the mock server gets the one GET and nothing else.
#[tokio::test]
async fn deploy_refuses_to_switch_tls_in_place() {
    let running_tls = objects_of(&with_tls("raftkv-members"))[3].1.clone();
    let running_plain = objects(3)[3].1.clone();
    for (running, wanted, says) in [
        (
            &running_tls,
            values(3),
            [
                "runs with TLS from Secret raftkv-members",
                "add `--tls-secret raftkv-members`",
            ],
        ),
        (
            &running_plain,
            with_tls("raftkv-members"),
            ["serves plaintext", "would roll it to TLS"],
        ),
    ] {
        let (platform, server) =
            mock_platform(vec![step(Method::GET, STS, 200, stored(running, "7"))]);
        let existing = deploy::existing(&platform).await.unwrap();
        let e = deploy::reconcile(wanted, None, existing).unwrap_err();
        assert_eq!(e.exit, Exit::BadInput);
        for part in says
            .iter()
            .chain(&["kubectl -n db delete statefulset raftkv"])
        {
            assert!(e.message.contains(part), "{part:?} in {e}");
        }
        server.await.unwrap();
    }
}

/// A new Secret (rotation to another CA, say) or another client
/// certificate rule rolls as any template change does.
#[tokio::test]
async fn deploy_with_another_tls_secret_is_applied() {
    let running = objects_of(&with_tls("raftkv-members"))[3].1.clone();
    let (platform, server) =
        mock_platform(vec![step(Method::GET, STS, 200, stored(&running, "7"))]);
    let existing = deploy::existing(&platform).await.unwrap();
    assert_eq!(
        existing.as_ref().and_then(|e| e.tls.clone()),
        with_tls("raftkv-members").tls
    );
    let mut wanted = with_tls("raftkv-members-2026");
    wanted.tls.as_mut().unwrap().client_cert_auth = false;
    let (values, replicas) = deploy::reconcile(wanted.clone(), None, existing).unwrap();
    assert_eq!((values, replicas), (wanted, 3));
    server.await.unwrap();
}

#[tokio::test]
async fn an_apply_conflict_is_explained() {
    let (path, object) = objects(3)[0].clone();
    let steps = vec![
        step(Method::GET, path.clone(), 200, stored(&object, "3")),
        step(
            Method::PATCH,
            format!("{path}{APPLY}"),
            409,
            failure(
                409,
                "Conflict",
                "Apply failed with 1 conflict: conflict with \"helm\": .spec.ports",
            ),
        ),
    ];
    let (platform, server) = mock_platform(steps);
    let e = deploy::apply(&platform, &Manifests::new(&values(3)))
        .await
        .unwrap_err();
    assert_eq!(e.exit, Exit::Error);
    assert!(
        e.message
            .starts_with("cannot apply service/raftkv-headless: Conflict"),
        "{e}"
    );
    assert!(e.message.contains("conflict with \"helm\""), "{e}");
    server.await.unwrap();
}

fn pod(ordinal: u64, phase: &str, ready: bool) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("raftkv-{ordinal}"), "namespace": "db"},
        "spec": {"nodeName": format!("worker-{ordinal}"), "containers": [{"name": "raftkv"}]},
        "status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            "containerStatuses": [{
                "name": "raftkv", "ready": ready, "restartCount": ordinal, "image": "raftkv:test",
                "imageID": "", "started": true
            }]
        }
    })
}

fn pod_list(pods: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "9"}, "items": pods})
}

const PODS: &str = "/api/v1/namespaces/db/pods?&labelSelector=app.kubernetes.io%2Fname%3Draftkv%2Capp.kubernetes.io%2Finstance%3Draftkv";

#[tokio::test]
async fn pods_are_listed_by_label_and_deleted_with_the_asked_grace() {
    let steps = vec![
        step(
            Method::GET,
            PODS,
            200,
            pod_list(vec![
                pod(2, "Pending", false),
                pod(0, "Running", true),
                pod(1, "Running", true),
            ]),
        ),
        step(
            Method::DELETE,
            "/api/v1/namespaces/db/pods/raftkv-1?",
            200,
            pod(1, "Running", true),
        )
        .checking(|_, body| assert_eq!(body["gracePeriodSeconds"], 0, "{body}")),
        step(
            Method::DELETE,
            "/api/v1/namespaces/db/pods/raftkv-2?",
            200,
            pod(2, "Running", true),
        )
        .checking(|_, body| assert_eq!(body["gracePeriodSeconds"], 5, "{body}")),
        step(
            Method::DELETE,
            "/api/v1/namespaces/db/pods/raftkv-0?",
            200,
            pod(0, "Running", true),
        )
        .checking(|_, body| assert!(body.get("gracePeriodSeconds").is_none(), "{body}")),
        step(
            Method::DELETE,
            "/api/v1/namespaces/db/pods/raftkv-0?",
            403,
            failure(
                403,
                "Forbidden",
                "pods \"raftkv-0\" is forbidden: User \"dev\" cannot delete resource \"pods\"",
            ),
        ),
    ];
    let (platform, server) = mock_platform(steps);
    let pods = platform.pods().await.unwrap();
    let names: Vec<(&str, u64, bool)> = pods
        .iter()
        .map(|p| (p.name.as_str(), p.id, p.running))
        .collect();
    assert_eq!(
        names,
        [
            ("raftkv-0", 0, true),
            ("raftkv-1", 1, true),
            ("raftkv-2", 2, false)
        ]
    );
    assert_eq!(
        pods[1].endpoint.as_deref(),
        Some("raftkv-1.raftkv-headless.db.svc:7379")
    );
    platform
        .delete_pod("raftkv-1", Grace::Forced)
        .await
        .unwrap();
    let five = Grace::Graceful(Some(std::time::Duration::from_secs(5)));
    platform.delete_pod("raftkv-2", five).await.unwrap();
    platform
        .delete_pod("raftkv-0", Grace::Graceful(None))
        .await
        .unwrap();
    let e = platform
        .delete_pod("raftkv-0", Grace::Forced)
        .await
        .unwrap_err();
    assert!(
        e.message
            .starts_with("cannot delete pod raftkv-0 in namespace db: Forbidden"),
        "{e}"
    );
    assert!(e.message.contains("kubectl auth can-i"), "{e}");
    server.await.unwrap();
}

/// A Helm release named otherwise (StatefulSet `prod-raftkv`, pods
/// labelled with the release `prod`) on client port 8000: with the chart's
/// `--selector` and `--client-port` (what the scale-down hook passes),
/// raftctl lists exactly those pods and dials them on that port.
#[tokio::test]
async fn a_release_of_any_name_and_port_is_found_by_its_selector() {
    let prod = |ordinal: u64| {
        let mut p = pod(ordinal, "Running", true);
        p["metadata"]["name"] = json!(format!("prod-raftkv-{ordinal}"));
        p
    };
    let steps = vec![step(
        Method::GET,
        "/api/v1/namespaces/db/pods?&labelSelector=app.kubernetes.io%2Finstance%3Dprod%2Capp.kubernetes.io%2Fname%3Draftkv",
        200,
        // A pod of another StatefulSet the selector also matched is ignored.
        pod_list(vec![prod(1), prod(0), pod(0, "Running", true)]),
    )];
    let (platform, server) = mock_platform(steps);
    let platform = KubePlatform::new(platform.client, "db".into(), "prod-raftkv".into(), true)
        .with_pods(
            Some("app.kubernetes.io/instance=prod,app.kubernetes.io/name=raftkv".into()),
            8000,
        );
    let pods = platform.pods().await.unwrap();
    let found: Vec<(&str, Option<&str>)> = pods
        .iter()
        .map(|p| (p.name.as_str(), p.endpoint.as_deref()))
        .collect();
    assert_eq!(
        found,
        [
            (
                "prod-raftkv-0",
                Some("prod-raftkv-0.prod-raftkv-headless.db.svc:8000")
            ),
            (
                "prod-raftkv-1",
                Some("prod-raftkv-1.prod-raftkv-headless.db.svc:8000")
            ),
        ]
    );
    assert_eq!(
        platform.endpoints_for(3).await.unwrap(),
        (0..3)
            .map(|i| format!("prod-raftkv-{i}.prod-raftkv-headless.db.svc:8000"))
            .collect::<Vec<_>>()
    );
    server.await.unwrap();
}

#[tokio::test]
async fn status_shows_pods_beside_their_nodes() {
    let steps = vec![step(
        Method::GET,
        PODS,
        200,
        pod_list(vec![pod(0, "Running", true), pod(1, "Pending", false)]),
    )];
    let (platform, server) = mock_platform(steps);
    let pods = platform.list_pods().await.unwrap();
    server.await.unwrap();
    // Node 0 answered as leader; node 1 did not answer.
    let node = raftkv::ctl::cluster::NodeStatus {
        endpoint: "e0".into(),
        id: Some(0),
        address: "a0".into(),
        role: "leader".into(),
        term: Some(4),
        leader: Some(0),
        lease_remaining_seconds: Some(0.2),
        commit: Some(10),
        applied: Some(10),
        lag: Some(0),
        error: None,
    };
    let rows = status::merge(&platform, &pods, &[node]);
    let text = status::render(&rows);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("POD       PHASE    READY  RESTARTS  NODE      ROLE"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("raftkv-0  Running  yes    0         worker-0  leader  4"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("raftkv-1  Pending  no     1         worker-1  -"),
        "{text}"
    );
}

#[tokio::test]
async fn scale_patches_only_the_replica_count() {
    let steps =
        vec![step(
        Method::PATCH,
        format!("{STS}/scale?&fieldManager=raftctl"),
        200,
        json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "raftkv"},
               "spec": {"replicas": 1}}),
    )
    .checking(|headers, body| {
        assert_eq!(headers["content-type"], "application/merge-patch+json");
        assert_eq!(body, &json!({"spec": {"replicas": 1}}));
    })];
    let (platform, server) = mock_platform(steps);
    scale::patch_replicas(&platform, 1).await.unwrap();
    server.await.unwrap();
}

/// What kube's wait helper asks: a list of the StatefulSet by name, then
/// a watch from the list's resource version.
const STS_LIST: &str =
    "/apis/apps/v1/namespaces/db/statefulsets?&fieldSelector=metadata.name%3Draftkv&limit=500";
const STS_WATCH: &str = "/apis/apps/v1/namespaces/db/statefulsets?&watch=true&timeoutSeconds=290&fieldSelector=metadata.name%3Draftkv&allowWatchBookmarks=true&resourceVersion=10";

/// The StatefulSet `raftkv` as the API server shows it with `ready` pods.
fn statefulset(ready: i32, resource_version: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "raftkv", "namespace": "db", "resourceVersion": resource_version},
        "spec": {"replicas": 2, "selector": {}, "serviceName": "raftkv-headless", "template": {}},
        "status": {"replicas": 2, "readyReplicas": ready}
    })
}

#[tokio::test]
async fn deploy_waits_for_ready_pods_and_a_leader_and_stops_on_ctrl_c() {
    // kube's wait helper lists the StatefulSet by name, then watches it:
    // one pod ready at first, the second one in the watch's first event.
    let steps = vec![
        step(
            Method::GET,
            STS_LIST,
            200,
            json!({
                "apiVersion": "apps/v1",
                "kind": "StatefulSetList",
                "metadata": {"resourceVersion": "10"},
                "items": [statefulset(1, "10")]
            }),
        ),
        step(
            Method::GET,
            STS_WATCH,
            200,
            json!({"type": "MODIFIED", "object": statefulset(2, "11")}),
        ),
    ];
    let (platform, server) = mock_platform(steps);
    let leader = || async { Some(1) };
    let never = std::future::pending::<()>();
    let limit = std::time::Duration::from_secs(30);
    let progress = deploy::wait_ready(&platform, 2, leader, limit, never)
        .await
        .unwrap();
    assert_eq!((progress.ready, progress.leader), (2, Some(1)));
    server.await.unwrap();

    // Ctrl-C while waiting: a clean error that says what state is left.
    let (platform, server) = mock_platform(vec![]);
    let e = deploy::wait_ready(&platform, 2, leader, limit, async {})
        .await
        .unwrap_err();
    assert_eq!(e.exit, Exit::Unhealthy);
    assert!(e.message.contains("the objects are applied"), "{e}");
    server.await.unwrap();
}

/// Outside the cluster, raftctl reaches each pod through a local listener
/// whose connections are tunnelled by the API server (`Api::portforward`).
/// What the mock can show: the listener per pod, the exact request each
/// connection makes (the pod's portforward subresource, its client port, a
/// WebSocket upgrade), and that a tunnel which cannot open closes the local
/// connection (the client then tries another pod). The tunnel's bytes are
/// out of reach: kube takes the upgraded connection from hyper's
/// `OnUpgrade` extension, which only a real HTTP connection sets; a
/// `tower-test` response has none, so the upgrade fails after the 101.
/// tests/kube_forward.rs runs the tunnel for real.
#[tokio::test]
async fn port_forward_asks_the_api_server_for_the_pods_client_port() {
    use tokio::io::AsyncReadExt;
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "db");
    let platform = KubePlatform::new(client, "db".into(), "raftkv".into(), false);
    let endpoints = platform.endpoints_for(2).await.unwrap();
    assert_eq!(endpoints.len(), 2);
    assert!(
        endpoints.iter().all(|e| e.starts_with("127.0.0.1:")),
        "{endpoints:?}"
    );
    // Asked again (deploy's wait polls), the same listeners answer.
    assert_eq!(platform.endpoints_for(2).await.unwrap(), endpoints);
    let mut conn = tokio::net::TcpStream::connect(&endpoints[1]).await.unwrap();
    let mut handle = pin!(handle);
    let (request, send) = handle.next_request().await.expect("a tunnel request");
    assert_eq!(request.method(), Method::GET);
    assert_eq!(
        request.uri().path(),
        "/api/v1/namespaces/db/pods/raftkv-1/portforward"
    );
    assert_eq!(
        request.uri().query(),
        Some("&ports=7379"),
        "{}",
        request.uri()
    );
    let upgrade = request
        .headers()
        .get("upgrade")
        .map(|v| v.to_str().unwrap());
    assert_eq!(upgrade, Some("websocket"));
    send.send_response(
        Response::builder()
            .status(101)
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .body(Body::empty())
            .unwrap(),
    );
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), conn.read(&mut byte))
        .await
        .expect("the failed tunnel closes the local connection");
    assert_eq!(
        read.unwrap_or(0),
        0,
        "no byte comes from a tunnel that never opened"
    );
}

/// A pause needs the pod's process, which the API does not reach: the
/// platform refuses it (before a chaos run starts), and pausing anyway
/// sends no request (the mock would fail on any).
#[tokio::test]
async fn kube_refuses_to_pause_a_pod_and_asks_the_api_nothing() {
    use raftkv::ctl::fault::FaultKind;
    let (platform, server) = mock_platform(vec![]);
    let pause = FaultKind::Pause(std::time::Duration::from_millis(900));
    let why = platform.refuses(pause).expect("kube refuses a pause");
    assert!(
        why.contains("cannot pause") && why.contains("--platform local or docker"),
        "{why}"
    );
    assert_eq!(platform.refuses(FaultKind::Kill), None);
    let err = platform
        .pause_pod(0, std::time::Duration::from_millis(900))
        .await
        .unwrap_err();
    assert_eq!(err.exit, Exit::BadInput);
    assert_eq!(err.message, why);
    drop(platform);
    server.await.unwrap();
}
