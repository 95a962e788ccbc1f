//! The Helm chart, proven offline by `scripts/chart.py check`: Helm's own
//! renderer and linter (PyPI helm-python-sdk) for the default and a
//! non-default value set, every object validated strictly against the
//! Kubernetes schemas (PyPI kubernetes-validate), the render guards and the
//! values schema refusing bad values, and k8s/ equal to the default render.
//! `.ci/run` installs both packages.

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
    assert!(text.contains("chart check: 8 checks passed"), "{text}");
}
