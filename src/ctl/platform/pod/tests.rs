use std::collections::BTreeMap;

use super::*;

/// The values the tests render.
pub(crate) fn values() -> Values {
    Values {
        name: "raftkv".into(),
        namespace: "db".into(),
        replicas: 3,
        image: "raftkv:test".into(),
        storage_size: "1Gi".into(),
        storage_class: None,
        tls: None,
    }
}

#[test]
fn the_statefulset_is_what_raft_needs() {
    let sts = statefulset(&values());
    let spec = &sts.spec;
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    assert_eq!(spec.service_name.as_deref(), Some("raftkv-headless"));
    let claims = spec.volume_claim_templates.as_ref().unwrap();
    assert_eq!(claims[0].metadata.name.as_deref(), Some("data"));
    let pod = spec.template.spec.as_ref().unwrap();
    let c = &pod.containers[0];
    let probe_path =
        |p: &Option<Probe>| p.as_ref().unwrap().http_get.as_ref().unwrap().path.clone();
    assert_eq!(probe_path(&c.liveness_probe).as_deref(), Some("/livez"));
    assert_eq!(probe_path(&c.readiness_probe).as_deref(), Some("/readyz"));
    let ports: Vec<i32> = c
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| p.container_port)
        .collect();
    assert_eq!(ports, [7379, 7380, 7381]);
    assert_eq!(c.volume_mounts.as_ref().unwrap()[0].mount_path, DATA_DIR);
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_string()][..])
    );
    assert_eq!(
        pod.security_context.as_ref().unwrap().run_as_non_root,
        Some(true)
    );
    // The selector matches the pod template's labels.
    let template_labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    for (k, v) in spec.selector.match_labels.as_ref().unwrap() {
        assert_eq!(template_labels.get(k), Some(v));
    }
}

#[test]
fn the_node_is_configured_by_statefulset_naming() {
    let sts = statefulset(&values());
    let c = &sts.spec.template.spec.unwrap().containers[0];
    let env: BTreeMap<String, (Option<String>, Option<String>)> = c
        .env
        .clone()
        .unwrap()
        .into_iter()
        .map(|e| {
            let field = e.value_from.and_then(|s| s.field_ref).map(|f| f.field_path);
            (e.name, (e.value, field))
        })
        .collect();
    assert_eq!(env["POD_NAME"].1.as_deref(), Some("metadata.name"));
    assert_eq!(
        env["RAFTKV_NAMESPACE"].1.as_deref(),
        Some("metadata.namespace")
    );
    assert_eq!(env["RAFTKV_STATEFULSET"].0.as_deref(), Some("raftkv"));
    assert_eq!(env["RAFTKV_SERVICE"].0.as_deref(), Some("raftkv-headless"));
    assert_eq!(env["RAFTKV_REPLICAS"].0.as_deref(), Some("3"));
    assert_eq!(env["RAFTKV_DATA_DIR"].0.as_deref(), Some(DATA_DIR));
}

/// A deploy reads the TLS of the running pods back from their template, to
/// refuse switching it on or off in place: what was written reads back.
#[test]
fn the_tls_of_a_template_reads_back() {
    let pod_of = |v: &Values| statefulset(v).spec.template.spec.unwrap();
    assert_eq!(TlsValues::of_pod(&pod_of(&values())), None);
    for client_cert_auth in [true, false] {
        let tls = TlsValues {
            secret: "raftkv-members".into(),
            client_cert_auth,
        };
        let v = Values {
            tls: Some(tls.clone()),
            ..values()
        };
        assert_eq!(TlsValues::of_pod(&pod_of(&v)), Some(tls));
    }
}
