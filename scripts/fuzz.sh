#!/usr/bin/env bash
# Fuzzes every parser of outside input with libFuzzer (cargo fuzz, targets in fuzz/): builds
# them all, runs each in turn for SECONDS (default 60) with one job, and prints per target
# the executions and crashes, then the total. Exits 1 if any target crashed; the input that
# did it is kept in fuzz/artifacts/TARGET/ (replay: scripts/fuzz.sh --replay FILE TARGET).
#
#   scripts/fuzz.sh [SECONDS]
#   scripts/fuzz.sh --replay FILE TARGET
#
# Not run by CI (scripts/test.sh): it is open-ended by nature. It needs cargo-fuzz (installed
# here from crates.io when missing) and the toolchain's unstable flags, which stable rustc
# takes with RUSTC_BOOTSTRAP=1. The seeds in fuzz/corpus/TARGET/ are read, never written:
# what the run adds goes to fuzz/target/corpus/TARGET/ and is reused by the next run.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

replay=""
if [ "${1:-}" = "--replay" ]; then
  [ $# -eq 3 ] || { echo "usage: scripts/fuzz.sh --replay FILE TARGET" >&2; exit 2; }
  replay=$(realpath "$2")
  only=$3
  shift 3
fi
seconds=${1:-60}
case "$seconds" in
  '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS]" >&2; exit 2 ;;
esac

echo "== cargo fuzz build (release, AddressSanitizer)"
(cd fuzz && cargo fuzz build -O)
bin_dir=$root/fuzz/target/x86_64-unknown-linux-gnu/release

if [ -n "$replay" ]; then
  exec "$bin_dir/$only" "$replay"
fi

targets=$(cd fuzz && cargo fuzz list)
total_execs=0
total_crashes=0
printf '%-16s %14s %8s\n' target executions crashes
for t in $targets; do
  work=$root/fuzz/target/corpus/$t
  artifacts=$root/fuzz/artifacts/$t
  logs=$root/fuzz/target/logs/$t
  mkdir -p "$work" "$artifacts" "$logs"
  before=$(find "$artifacts" -type f | wc -l)
  # With -jobs the run happens in a child whose output libFuzzer writes to fuzz-0.log in the
  # current directory; -timeout turns a hang into a reported crash.
  status=0
  (cd "$logs" && rm -f fuzz-*.log &&
    "$bin_dir/$t" -jobs=1 -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$artifacts/" "$work" "$root/fuzz/corpus/$t" \
      </dev/null >runner.log 2>&1) || status=$?
  log=$logs/fuzz-0.log
  [ -f "$log" ] || log=$logs/runner.log
  execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
  [ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9]*\)[[:space:]]*DONE.*/\1/p' "$log" | tail -n 1)
  [ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9]*\)[[:space:]].*/\1/p' "$log" | tail -n 1)
  execs=${execs:-0}
  crashes=$(($(find "$artifacts" -type f | wc -l) - before))
  if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
    crashes=1 # a failure that left no input behind (the runner itself) still counts
  fi
  printf '%-16s %14d %8d\n' "$t" "$execs" "$crashes"
  if [ "$crashes" -ne 0 ]; then
    grep -m 1 -A 3 -E 'panicked at|ERROR: (libFuzzer|AddressSanitizer)' "$log" | sed 's/^/    /' || true
    echo "    log: $log; input: $(ls -t "$artifacts" | head -n 1)"
  fi
  total_execs=$((total_execs + execs))
  total_crashes=$((total_crashes + crashes))
done
printf '%-16s %14d %8d\n' total "$total_execs" "$total_crashes"
[ "$total_crashes" -eq 0 ]
