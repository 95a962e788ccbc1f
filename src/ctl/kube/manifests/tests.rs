use super::*;
use crate::ctl::platform::pod::tests::values;

#[test]
fn peers_find_each_other_before_they_are_ready() {
    let m = Manifests::new(&values());
    let spec = m.headless.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
    assert_eq!(spec.publish_not_ready_addresses, Some(true));
    assert_eq!(m.client.metadata.name.as_deref(), Some("raftkv"));
    let budget = m.budget.spec.unwrap();
    assert_eq!(
        budget.min_available,
        Some(IntOrString::String("51%".into()))
    );
    assert_eq!(budget.max_unavailable, None);
    // What the disruption controller makes of it (a percentage rounds up):
    // every count keeps a quorum, and loses no more than it can spare.
    let percent: u32 = QUORUM_PERCENT.trim_end_matches('%').parse().unwrap();
    for (n, evictable) in [(1, 0), (3, 1), (5, 2), (7, 3)] {
        let keep = (n * percent).div_ceil(100);
        assert_eq!(keep, n / 2 + 1, "{n} replicas");
        assert_eq!(n - keep, evictable, "{n} replicas");
    }
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

/// The whole YAML, byte for byte (`raftctl manifests --replicas 5 --image
/// x/raftkv:1 -n db --name kv --storage-class fast`): a change here is a
/// change to what every deploy applies.
#[test]
fn the_yaml_is_exactly_this() {
    let yaml = Manifests::new(&Values {
        name: "kv".into(),
        namespace: "db".into(),
        replicas: 5,
        image: "x/raftkv:1".into(),
        storage_size: "1Gi".into(),
        storage_class: Some("fast".into()),
    })
    .to_yaml()
    .unwrap();
    assert_eq!(yaml, include_str!("kv-db-5.yaml"));
}
