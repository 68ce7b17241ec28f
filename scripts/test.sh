#!/usr/bin/env bash
# Runs every check of the project: formatting, lints, and all tests (unit, integration
# against the real dev-server, whole-process runs of the binary).
#
# It installs what the tests need when it is missing, so that a fresh machine passes too:
# Node.js and npm (Debian packages) and, pinned in tests/interop (`npm ci`), oidc-provider for
# the interop suite and the Genesys JavaScript SDK; the Genesys Python SDK, pinned with hashes
# in tests/sdk/requirements.txt, into the virtualenv target/genesys-venv; and redis-server
# (Debian package; the tests start their own on a free port). The Rust toolchain is expected on the machine; the dev-server is built from here.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  echo "== installing $* (Debian packages)"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}
command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || apt_install redis-server
python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
# curl is the tests' HTTP client; ip (iproute2) makes the fleet's network-namespace hosts;
# script (util-linux) gives the waiting-feedback test its terminal.
command -v curl >/dev/null || apt_install curl
command -v ip >/dev/null || apt_install iproute2
command -v script >/dev/null || apt_install util-linux
# dnsmasq is the real name server of the name-resolution test.
command -v dnsmasq >/dev/null || [ -x /usr/sbin/dnsmasq ] || apt_install dnsmasq-base

echo "== npm ci (tests/interop: oidc-provider, the Genesys JavaScript SDK)"
npm ci --prefix tests/interop --no-audit --no-fund --loglevel=error

# The Genesys Python SDK: installed again only when tests/sdk/requirements.txt changed since
# the virtualenv was made from it (its checksum is kept in the virtualenv).
venv=target/genesys-venv
want=$(sha256sum tests/sdk/requirements.txt | cut -d' ' -f1)
if [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  echo "== pip install (tests/sdk/requirements.txt: the Genesys Python SDK, into $venv)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --require-hashes -r tests/sdk/requirements.txt
  echo "$want" >"$venv/.requirements.sha256"
fi

# Two cores: keep the build and the test threads to what the machine has. Each crate's
# integration tests are one binary (tests/it), so the thread count bounds all of them at once.
jobs=$(nproc 2>/dev/null || echo 2)
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-$jobs}
export RUST_TEST_THREADS=${RUST_TEST_THREADS:-$jobs}
# Ambient settings must not leak into the tests (they also clear the environment of the
# processes they start, but `cargo test` itself should not see a user's profile).
unset FRESHTOKEN_CONFIG FRESHTOKEN_PROFILE RUST_LOG

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== module layering (no import cycles inside a crate)"
python3 scripts/module_cycles.py crates/*

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

# The prebuilt binary (scripts/release.sh: a static release build, several minutes on two
# cores the first time, then cached in target/release-static) is checked by the release tests
# (an empty chroot, man pages, SHA256SUMS). FRESHTOKEN_TEST_RELEASE=0 leaves it out of a quick
# local run (those tests then say they were not asked); CI runs it.
if [ "${FRESHTOKEN_TEST_RELEASE:-1}" = 1 ]; then
  command -v man >/dev/null || apt_install man-db
  command -v readelf >/dev/null || apt_install binutils
  echo "== scripts/release.sh (for the release tests)"
  bash scripts/release.sh target/release-dist
  export FRESHTOKEN_RELEASE_DIR=$PWD/target/release-dist
fi

echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Every test bounds its own waits; this is the backstop for a hang none of them foresaw. It
# ends the run (and every process it started: timeout signals its whole process group) with
# a failure and the log so far, long before a CI system would give up on it silently.
limit=40m
status=0
timeout --kill-after=30s "$limit" cargo test --workspace --locked 2>&1 | tee "$log" || status=$?
if [ "$status" -ne 0 ]; then
  [ "$status" -eq 124 ] && echo "== cargo test did not finish within $limit: a test hangs (see the last test named above)"
  exit "$status"
fi
# One closing line for the whole run: cargo's own last line is its doc tests' (often 0).
awk '/^test result:/ {p += $4; f += $6; s += $8} END {printf "total: %d passed, %d failed, %d skipped\n", p, f, s}' "$log"
