#!/usr/bin/env bash
# Runs every benchmark and prints the figures that docs/BENCHMARKS.md records:
#   1. the in-process hit path (criterion), at 1 and 2 threads, next to a Mutex<Option<Token>>;
#   2. `freshtoken get` as a whole process on a warm file cache, next to the shell recipe
#      (cut | base64 -d | jq, compare exp with date), timed by hyperfine;
#   3. get on a warm Redis; token requests for N concurrent processes; a cold get over HTTPS
#      next to curl making the same request (benches/cli/https-cold.sh);
#   4. the proxy under wrk: direct, nginx, freshtoken, at 32 connections and at 1
#      (benches/proxy/run.sh), and with a DPoP-bound token next to a bearer one
#      (benches/proxy/dpop.sh);
#   5. the agent: resident memory, and get --agent next to get (benches/agent/run.sh);
#   6. the fleet: token requests and wall time for N processes on 8 network-namespace hosts
#      sharing one Redis, and on a Redis Cluster and a Sentinel set, cold and warm, and p50/p99
#      of a get the Redis layer answers (needs root for the namespaces;
#      FRESHTOKEN_FLEET_SIZES, default "100 1000", e.g. "100 1000 5000").
# The binary measured is release.sh's static build.
# Usage: scripts/bench.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."

runs=300
[ "${1:-}" = "--quick" ] && runs=50

need() {
  command -v "$1" >/dev/null 2>&1 && return
  echo "installing $2 (Debian package) for the benchmarks" >&2
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; fi
}
need hyperfine hyperfine
need jq jq
need redis-server redis-server
need curl curl
need wrk wrk
need nginx nginx-light
need valgrind valgrind   # instruction counts (benches/cli/startup.sh)
need taskset util-linux  # the pinned proxy run

# The binary measured is the one people install: scripts/release.sh's static build (its own
# target folder, so the test builds are not disturbed), in target/bench-dist.
scripts/release.sh "$PWD/target/bench-dist" >/dev/null
bin=$PWD/target/bench-dist/freshtoken
echo "binary: $("$bin" --version | head -n1), $(du -h "$bin" | cut -f1), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at the start, $(date -u +%FT%TZ)"

echo "== hit path (criterion) =="
cargo bench --quiet -p freshtoken --bench hit_path 2>/dev/null | grep -E '^hit_path|time:'

echo
echo "== freshtoken get on a warm file cache vs the shell recipe (hyperfine, $runs runs) =="
work=$(mktemp -d)
trap 'kill "$server_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
"$bin" dev-server --client bench:bench-secret >"$work/server.out" &
server_pid=$!
for _ in $(seq 100); do grep -q '^freshtoken dev-server on' "$work/server.out" 2>/dev/null && break; sleep 0.05; done
base=$(head -n1 "$work/server.out" | awk '{print $NF}')
export FRESHTOKEN_TOKEN_URL="$base/oauth/token" FRESHTOKEN_CLIENT_ID=bench FRESHTOKEN_CLIENT_SECRET=bench-secret
export XDG_CACHE_HOME="$work/cache"
"$bin" get >/dev/null   # warm the cache

# A JWT with exp an hour ahead, as the recipe expects (the dev-server's tokens are opaque).
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
exp=$(( $(date +%s) + 3600 ))
printf '%s.%s.%s' "$(printf '{"alg":"RS256","typ":"JWT"}' | b64url)" \
  "$(printf '{"sub":"bench","exp":%d}' "$exp" | b64url)" "c2lnbmF0dXJl" >"$work/token.jwt"

printf 'a small file, as a bare process reads it\n' >"$work/small.txt"
hyperfine --style basic --warmup 20 --runs "$runs" -N \
  --export-markdown "$work/cli.md" \
  -n 'cat (a small file: the floor of a process)' "cat $work/small.txt" \
  -n 'freshtoken get (warm file cache)' "$bin get" \
  -n 'shell recipe (cut|base64|jq|date)' "bash benches/cli/jwt-exp-recipe.sh $work/token.jwt"
echo
cat "$work/cli.md"
echo
# Wall times move with whatever else the machine runs; instructions (callgrind) do not, and
# CPU time and page faults (perf stat, software events) move far less.
benches/cli/startup.sh "$bin" "$work/small.txt"
echo
echo "token requests during the whole run: $(curl -s "$base/__stats" | jq .token_requests) (expected 1)"

echo
echo "== freshtoken get on a warm Redis cache (empty file layer each run) vs a warm file cache =="
redis_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >/dev/null &
redis_pid=$!
trap 'kill "$server_pid" "$redis_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done
redis_url="redis://127.0.0.1:$redis_port/0"
FRESHTOKEN_CACHE=$redis_url XDG_CACHE_HOME="$work/warm-redis" "$bin" get >/dev/null
hyperfine --style basic --warmup 20 --runs "$runs" -N \
  --export-markdown "$work/redis.md" \
  -n 'freshtoken get (warm file cache)' "$bin get" \
  -n 'freshtoken get (warm Redis, cold file layer)' \
  --prepare "rm -rf $work/redis-machine" \
  "env FRESHTOKEN_CACHE=$redis_url XDG_CACHE_HOME=$work/redis-machine $bin get"
echo
cat "$work/redis.md"

echo
echo "== token requests for N concurrent processes on a cold cache =="
echo "| processes | freshtoken get (4 machines, shared Redis) | shell recipe (curl per process) |"
echo "|---:|---:|---:|"
for n in 10 50 200 500; do
  redis-cli -p "$redis_port" flushall >/dev/null
  before=$(curl -s "$base/__stats" | jq .token_requests)
  for i in $(seq "$n"); do
    FRESHTOKEN_CACHE=$redis_url XDG_CACHE_HOME="$work/fleet-$n-$(( i % 4 ))" "$bin" get >/dev/null &
  done
  wait_pids=$(jobs -p | grep -v -e "^$server_pid\$" -e "^$redis_pid\$" || true)
  for p in $wait_pids; do wait "$p" || true; done
  ours=$(( $(curl -s "$base/__stats" | jq .token_requests) - before ))
  before=$(curl -s "$base/__stats" | jq .token_requests)
  for i in $(seq "$n"); do
    curl -s -o /dev/null -u bench:bench-secret -d grant_type=client_credentials "$base/oauth/token" &
  done
  wait_pids=$(jobs -p | grep -v -e "^$server_pid\$" -e "^$redis_pid\$" || true)
  for p in $wait_pids; do wait "$p" || true; done
  theirs=$(( $(curl -s "$base/__stats" | jq .token_requests) - before ))
  echo "| $n | $ours | $theirs |"
done

echo
echo "== cold freshtoken get over HTTPS (local TLS token endpoint) vs curl with the same CA =="
BIN="$bin" RUNS="$runs" benches/cli/https-cold.sh

echo
echo "== proxy: wrk against a small upstream, direct / through nginx / through freshtoken proxy =="
BIN="$bin" benches/proxy/run.sh
echo "one request at a time, as a script makes them:"
BIN="$bin" CONNS=1 ROUNDS=3 benches/proxy/run.sh
echo "one request at a time, everything pinned to CPU 0 (the cost per request, without wake-ups across CPUs):"
BIN="$bin" CONNS=1 ROUNDS=3 WRK_SECONDS=5 taskset -c 0 benches/proxy/run.sh
echo "with a DPoP-bound token (a fresh ES256 proof per request) next to a bearer token:"
BIN="$bin" benches/proxy/dpop.sh

echo
echo "== agent: resident memory (10 profiles, 2 proxies) and get --agent vs get =="
BIN="$bin" RUNS="$runs" benches/agent/run.sh

echo
echo "== fleet: N processes on 8 namespace hosts (one Redis), a Redis Cluster, a Sentinel set =="
FRESHTOKEN_FLEET_SIZES=${FRESHTOKEN_FLEET_SIZES:-100 1000} \
  cargo test --release --locked --quiet -p freshtoken-cli --test it fleet_bench:: -- --ignored --nocapture \
  | grep -E '^\|'
