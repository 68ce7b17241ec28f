//! Build information for `freshtoken --version`: the git commit the binary was built from
//! and the optional features built in, so that a binary found on a CI runner says what it is.

use std::process::Command;

fn main() {
    // A release built outside a git checkout (a source tarball) names its commit itself.
    println!("cargo:rerun-if-env-changed=FRESHTOKEN_GIT_COMMIT");
    let commit = std::env::var("FRESHTOKEN_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    // Rebuilt when HEAD moves (a commit, a checkout), not on every file change.
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{reference}");
        }
        if let Some(common) = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]) {
            println!("cargo:rerun-if-changed={common}/packed-refs");
        }
    }
    let mut features: Vec<&str> = Vec::new();
    if std::env::var_os("CARGO_FEATURE_REDIS").is_some() {
        features.push("redis");
    }
    let features = if features.is_empty() {
        "none".to_owned()
    } else {
        features.join(",")
    };
    println!("cargo:rustc-env=FRESHTOKEN_BUILD_INFO=commit {commit}, features: {features}");
}

/// `git ARGS` in this crate's folder, trimmed; `None` when git or the repository is absent.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
