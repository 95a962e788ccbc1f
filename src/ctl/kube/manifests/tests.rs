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
        tls: None,
    })
    .to_yaml()
    .unwrap();
    assert_eq!(yaml, include_str!("kv-db-5.yaml"));
}

fn tls_values(client_cert_auth: bool) -> Values {
    Values {
        tls: Some(crate::ctl::platform::pod::TlsValues {
            secret: "kv-members".into(),
            client_cert_auth,
        }),
        ..values()
    }
}

/// `--tls-secret`: the Secret mounted whole and read-only where the
/// chart mounts it, every TLS setting of the node pointing into it, the
/// probes (plain HTTP) as without TLS.
#[test]
fn tls_mounts_the_secret_and_points_the_node_at_it() {
    use crate::ctl::platform::pod::TLS_DIR;
    for cca in [true, false] {
        let sts = Manifests::new(&tls_values(cca)).statefulset;
        let plain = Manifests::new(&values()).statefulset;
        let pod = sts.spec.template.spec.unwrap();
        let c = &pod.containers[0];
        let volumes = pod.volumes.as_ref().unwrap();
        assert_eq!(volumes.len(), 1);
        let secret = volumes[0].secret.as_ref().unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("kv-members"));
        assert_eq!(secret.default_mode, Some(0o440));
        let mount = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == volumes[0].name)
            .unwrap();
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only, &mount.sub_path),
            (TLS_DIR, Some(true), &None)
        );
        let env: std::collections::BTreeMap<&str, &str> = c
            .env
            .iter()
            .flatten()
            .filter_map(|e| Some((e.name.as_str(), e.value.as_deref()?)))
            .collect();
        for (name, file) in [
            ("RAFTKV_CERT_FILE", "tls.crt"),
            ("RAFTKV_KEY_FILE", "tls.key"),
            ("RAFTKV_TRUSTED_CA_FILE", "ca.crt"),
            ("RAFTKV_PEER_CERT_FILE", "tls.crt"),
            ("RAFTKV_PEER_KEY_FILE", "tls.key"),
            ("RAFTKV_PEER_TRUSTED_CA_FILE", "ca.crt"),
        ] {
            assert_eq!(env.get(name), Some(&format!("{TLS_DIR}/{file}").as_str()));
        }
        let cca_text = cca.to_string();
        assert_eq!(env.get("RAFTKV_CLIENT_CERT_AUTH"), Some(&cca_text.as_str()));
        let plain_pod = plain.spec.template.spec.unwrap();
        let p = &plain_pod.containers[0];
        assert_eq!(
            (&c.startup_probe, &c.liveness_probe, &c.readiness_probe),
            (&p.startup_probe, &p.liveness_probe, &p.readiness_probe)
        );
        assert!(plain_pod.volumes.is_none());
        assert!(!p.env.iter().flatten().any(|e| e.name.contains("CERT")));
    }
}

/// The TLS flags as the command line takes them: the Secret's name is
/// checked, and client certificate auth needs a Secret.
#[test]
fn tls_flags_are_checked_on_the_command_line() {
    use crate::ctl::cli::{Cli, Command};
    use clap::Parser;
    let parse = |extra: &[&str]| {
        Cli::try_parse_from(["raftctl", "manifests"].iter().chain(extra)).map(|c| match c.command {
            Command::Manifests(m) => m.values,
            _ => unreachable!(),
        })
    };
    let v = parse(&["--tls-secret", "kv-members"]).unwrap();
    assert_eq!(
        (v.tls_secret.as_deref(), v.tls_client_cert_auth),
        (Some("kv-members"), None)
    );
    let v = parse(&["--tls-secret", "a.b", "--tls-client-cert-auth", "false"]).unwrap();
    assert_eq!(v.tls_client_cert_auth, Some(false));
    for bad in ["Members", "x-", "-x", "a..b", "a_b", ""] {
        // `=`: a value starting with '-' is the value, not a flag.
        let arg = format!("--tls-secret={bad}");
        let e = parse(&[arg.as_str()]).unwrap_err().to_string();
        assert!(e.contains("is not a Secret name"), "{bad}: {e}");
    }
    let e = parse(&["--tls-client-cert-auth", "false"]).unwrap_err();
    assert!(e.to_string().contains("--tls-secret"), "{e}");
}

/// A TLS deploy that waits for the leader needs raftctl's own CA (and a
/// client certificate when the nodes require one); checked before any
/// object is applied.
#[test]
fn a_tls_deploy_needs_raftctls_tls_settings_to_wait() {
    use crate::client::ClientOptions;
    use crate::ctl::kube::commands::check_wait_tls;
    use crate::tls::generate::{Authority, Leaf};
    use crate::tls::{ClientFiles, ClientTls};
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new("test ca").unwrap();
    let user = ca.issue(&Leaf::user("root")).unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let ca_file = write("ca.crt", &ca.cert_pem);
    let identity = Some((
        write("tls.crt", &user.cert_pem),
        write("tls.key", &user.key_pem),
    ));
    let with = |identity| ClientOptions {
        tls: Some(
            ClientTls::new(ClientFiles {
                ca: ca_file.clone(),
                identity,
            })
            .unwrap(),
        ),
        ..ClientOptions::default()
    };
    let plain = ClientOptions::default();
    assert!(check_wait_tls(&values(), &plain).is_ok());
    let e = check_wait_tls(&tls_values(true), &plain).unwrap_err();
    assert!(e.message.contains("needs --cacert"), "{e}");
    assert!(e.message.contains("--no-wait"), "{e}");
    let e = check_wait_tls(&tls_values(true), &with(None)).unwrap_err();
    assert!(e.message.contains("needs --cert and --key"), "{e}");
    assert!(check_wait_tls(&tls_values(false), &with(None)).is_ok());
    assert!(check_wait_tls(&tls_values(true), &with(identity)).is_ok());
}

/// Docker has no Secrets: `deploy --platform docker --tls-secret` is
/// refused before Docker is asked anything.
#[tokio::test]
async fn docker_deploy_refuses_a_tls_secret() {
    use crate::client::ClientOptions;
    use crate::ctl::cli::{Cli, Command, Output};
    use clap::Parser;
    let cli = Cli::try_parse_from([
        "raftctl",
        "deploy",
        "--platform",
        "docker",
        "--tls-secret",
        "kv-members",
    ])
    .unwrap();
    let Command::Deploy(args) = cli.command else {
        unreachable!()
    };
    let e = crate::ctl::kube::commands::deploy(&args, Output::Table, ClientOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.exit, crate::ctl::exit::Exit::BadInput);
    assert!(e.message.contains("raftctl local --tls"), "{e}");
}
