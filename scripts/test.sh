#!/usr/bin/env bash
# Runs every check of the project: formatting, lints, and all tests (unit, integration
# against the real dev-server, whole-process runs of the binary).
#
# It installs what the tests need when it is missing, so that a fresh machine passes too.
# Today that is only the Rust toolchain (expected on the machine); services the tests start
# themselves (the dev-server) are built from this repository.
set -euo pipefail
cd "$(dirname "$0")/.."

# Two cores: keep the build and the test threads to what the machine has.
jobs=$(nproc 2>/dev/null || echo 2)
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-$jobs}
export RUST_TEST_THREADS=${RUST_TEST_THREADS:-$jobs}
# Ambient settings must not leak into the tests (they also clear the environment of the
# processes they start, but `cargo test` itself should not see a user's profile).
unset FRESHTOKEN_CONFIG FRESHTOKEN_PROFILE RUST_LOG

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --workspace --locked
