//! Embeds the git commit and the build time, reported by `--version` and `/api/health`.
//!
//! The variables are deliberately not `SOFIIA_*`: `cargo run` also exports them to the running
//! binary, where a `SOFIIA_*` name would be read as a (unknown) configuration key.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn main() {
    let sha = std::env::var("GIT_SHA")
        .ok()
        .or_else(git_sha)
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=BUILD_GIT_SHA={sha}");

    // SOURCE_DATE_EPOCH makes reproducible builds report the same time.
    let built = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(|secs| UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap_or_else(SystemTime::now);
    println!(
        "cargo:rustc-env=BUILD_TIMESTAMP={}",
        humantime::format_rfc3339_seconds(built)
    );
    println!("cargo:rerun-if-env-changed=GIT_SHA");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
}

fn git_sha() -> Option<String> {
    let output = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    let sha = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && !sha.is_empty()).then_some(sha)
}
