//! The image under test: built once per test binary with scripts/image.sh
//! from the binaries cargo built (tests/containers.rs, chaos.rs, scale.rs).

use super::docker;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

/// The repository root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The image under test, built once; `None` (with the reason printed) when
/// Docker is absent.
pub fn image() -> Option<String> {
    static IMAGE: OnceLock<Option<String>> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            if let Some(why) = docker::unavailable() {
                eprintln!("SKIPPED: Docker is not available here ({why})");
                return None;
            }
            Some(build_image())
        })
        .clone()
}

/// scripts/image.sh with the binaries of this build (no nested cargo: the
/// outer `cargo test` holds the build lock).
fn build_image() -> String {
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_raftkv"))
        .parent()
        .unwrap()
        .to_path_buf();
    // One tag per checkout, replaced by each run (no pile of test images).
    let checkout = root().display().to_string();
    let hash = checkout.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let tag = format!("raftkv:test-{:08x}", hash as u32);
    let start = Instant::now();
    let out = Command::new("scripts/image.sh")
        .current_dir(root())
        .arg(&tag)
        .env("RAFTKV_BIN_DIR", &bin_dir)
        .output()
        .expect("scripts/image.sh runs");
    assert!(
        out.status.success(),
        "scripts/image.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let size = docker::must(&["image", "inspect", "-f", "{{.Size}}", &tag]);
    eprintln!(
        "image {tag}: {:.1} MB, built in {:.1?}",
        size.parse::<f64>().unwrap() / 1e6,
        start.elapsed()
    );
    tag
}
