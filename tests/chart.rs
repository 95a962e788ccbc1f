//! The Helm chart, proven offline by `scripts/chart.py check`: Helm's own
//! renderer and linter (PyPI helm-python-sdk) for the default and a
//! non-default value set, every object validated strictly against the
//! Kubernetes schemas (PyPI kubernetes-validate), the render guards and the
//! values schema refusing bad values, the scale-down hook of a helm upgrade
//! that lowers replicas (rendered with a looked-up StatefulSet), and k8s/
//! equal to the default render.
//! `scripts/test` installs both packages.

mod common;

use common::ctl::raftctl;
use std::process::Command;

#[test]
fn chart_renders_lints_validates_and_matches_k8s_base() {
    let out = Command::new("python3")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["scripts/chart.py", "check"])
        .output()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(
        out.status.success(),
        "scripts/chart.py check failed (needs `pip install helm-python-sdk kubernetes-validate`):\n{text}"
    );
    assert!(text.contains("chart check: 13 checks passed"), "{text}");
    assert!(
        text.contains("helm upgrade 5 -> 3: a pre-upgrade Job runs `raftctl scale 3`"),
        "{text}"
    );
}

/// `raftctl manifests` against the chart rendered with the same values
/// (`scripts/chart.py compare`): same kinds and names (the chart-only
/// objects are listed there with the reason), ports, probes, volume
/// claims, security context, and with `--tls-secret` the chart's
/// `tls.source=existingSecret` (Secret volume, mount, node TLS settings,
/// client certificates required or not); every raftctl object
/// schema-valid (strict).
#[test]
fn raftctl_manifests_agree_with_the_chart() {
    let tls: [&[&str]; 3] = [
        &[],
        &["--tls-secret", "kv-members"],
        &[
            "--tls-secret",
            "kv-members",
            "--tls-client-cert-auth",
            "false",
        ],
    ];
    for (replicas, tls) in [("3", tls[0]), ("5", tls[0]), ("3", tls[1]), ("5", tls[2])] {
        let mut args = vec![
            "manifests",
            "-o",
            "json",
            "--replicas",
            replicas,
            "--image",
            "registry.example/raftkv:1.2.3",
        ];
        args.extend(tls);
        let out = raftctl(&args).ok();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &out.stdout).unwrap();
        let out = Command::new("python3")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["scripts/chart.py", "compare"])
            .arg(file.path())
            .output()
            .expect("python3 runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "replicas {replicas} {tls:?}:\n{text}");
        assert!(text.contains("4 raftctl objects valid and equal"), "{text}");
        assert_eq!(
            text.contains("TLS from Secret kv-members as the chart's existingSecret"),
            !tls.is_empty(),
            "{text}"
        );
    }
}
