//! The `docker` command line, blocking: each call runs one `docker ...` and
//! returns its trimmed stdout, or an error with its stderr.

use std::process::{Command, Stdio};

/// Runs `docker ARGS`.
pub fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("docker {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `docker ARGS` and panics with its error if it fails.
pub fn must(args: &[&str]) -> String {
    docker(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Why Docker cannot be used here, if it cannot.
pub fn unavailable() -> Option<String> {
    docker(&["version", "--format", "{{.Server.Version}}"]).err()
}

/// The IP address of `container` on `network`.
pub fn ip(container: &str, network: &str) -> Option<String> {
    let format = format!(
        "{{{{with index .NetworkSettings.Networks \"{network}\"}}}}{{{{.IPAddress}}}}{{{{end}}}}"
    );
    docker(&["inspect", "-f", &format, container])
        .ok()
        .filter(|ip| !ip.is_empty())
}

/// The Docker objects of one cluster made by `raftctl deploy --platform
/// docker` (all carry its label), removed on drop even when the test failed.
pub struct ClusterObjects {
    pub name: String,
}

impl ClusterObjects {
    /// A cluster name no other test run uses: `PREFIX-PID-RANDOM`.
    pub fn unique(prefix: &str) -> ClusterObjects {
        ClusterObjects {
            name: format!(
                "{prefix}-{}-{:04x}",
                std::process::id(),
                rand::random::<u16>()
            ),
        }
    }
}

impl Drop for ClusterObjects {
    fn drop(&mut self) {
        let label = format!("label=io.raftkv.cluster={}", self.name);
        let kinds: [(&[&str], &[&str]); 3] = [
            (&["ps", "-a"], &["rm", "-f"]),
            (&["volume", "ls"], &["volume", "rm", "-f"]),
            (&["network", "ls"], &["network", "rm"]),
        ];
        for (list, remove) in kinds {
            let listed = docker(&[list, &["-q", "--filter", &label]].concat());
            for id in listed.unwrap_or_default().lines() {
                let _ = docker(&[remove, &[id]].concat());
            }
        }
    }
}
