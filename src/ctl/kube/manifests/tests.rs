use super::*;

fn values() -> Values {
    Values {
        name: "raftkv".into(),
        namespace: "db".into(),
        replicas: 3,
        image: "raftkv:test".into(),
        storage_size: "1Gi".into(),
        storage_class: None,
    }
}

#[test]
fn the_statefulset_is_what_raft_needs() {
    let m = Manifests::new(&values());
    let spec = &m.statefulset.spec;
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
    let m = Manifests::new(&values());
    let c = &m.statefulset.spec.template.spec.unwrap().containers[0];
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

#[test]
fn peers_find_each_other_before_they_are_ready() {
    let m = Manifests::new(&values());
    let spec = m.headless.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
    assert_eq!(spec.publish_not_ready_addresses, Some(true));
    assert_eq!(m.client.metadata.name.as_deref(), Some("raftkv"));
    assert_eq!(
        m.budget.spec.unwrap().max_unavailable,
        Some(IntOrString::Int(1))
    );
    // Five members may lose two to drains and keep a quorum (the chart's rule).
    let five = Manifests::new(&Values {
        replicas: 5,
        ..values()
    });
    assert_eq!(
        five.budget.spec.unwrap().max_unavailable,
        Some(IntOrString::Int(2))
    );
}

#[test]
fn yaml_has_every_kind_with_its_api_version() {
    let yaml = Manifests::new(&values()).to_yaml().unwrap();
    assert_eq!(yaml.matches("---\n").count(), 4);
    for (api, kind) in [
        ("v1", "Service"),
        ("policy/v1", "PodDisruptionBudget"),
        ("apps/v1", "StatefulSet"),
    ] {
        assert!(
            yaml.contains(&format!("apiVersion: {api}\nkind: {kind}\n")),
            "{yaml}"
        );
    }
    assert!(yaml.contains("namespace: db"));
    // Each document reads back as the object it came from.
    let docs: Vec<&str> = yaml.split("---\n").filter(|d| !d.is_empty()).collect();
    let sts: StatefulSet = serde_norway::from_str(docs[3]).unwrap();
    assert_eq!(sts, Manifests::new(&values()).statefulset);
}
