#!/usr/bin/env bash
# The agent's benchmark (called by scripts/bench.sh, or alone after `cargo build --release`):
#   1. resident memory of `freshtoken agent` with 10 profiles (one sink each) and 2 proxies,
#      idle and after 100k requests through the proxies (wrk);
#   2. `freshtoken get --agent` next to `freshtoken get` on a warm file cache (hyperfine).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${BIN:-$PWD/target/release/freshtoken}
runs=${RUNS:-300}
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

# shellcheck source=benches/agent/config.sh
. "$(dirname "$0")/config.sh"
"$bin" dev-server "${agent_clients[@]}" >"$work/server.out" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do grep -q '^freshtoken dev-server on' "$work/server.out" 2>/dev/null && break; sleep 0.05; done
base=$(head -n1 "$work/server.out" | awk '{print $NF}')

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
p1=$(free_port); p2=$(free_port)
agent_config "$work" "$base" "$p1" "$p2" >"$work/agent.toml"
agent_secrets
"$bin" --config "$work/agent.toml" agent 2>"$work/agent.log" &
agent=$!
pids+=("$agent")
sock="$work/run/agent.sock"
for _ in $(seq 200); do
  [ "$(curl -s -m 1 --unix-socket "$sock" http://agent/readyz 2>/dev/null)" = "ready" ] && break
  sleep 0.05
done
rss() { awk -v k="$1:" '$1 == k {printf "%.1f MiB", $2 / 1024}' "/proc/$agent/status"; }
sleep 2
idle=$(rss VmRSS)
proxied() {
  curl -s --unix-socket "$sock" http://agent/metrics |
    awk '/^freshtoken_proxy_requests_total/ {n += $2} END {printf "%d", n}'
}
while [ "$(proxied)" -lt 100000 ]; do
  wrk -t1 -c8 -d3s "http://127.0.0.1:$p1/api/bench" >/dev/null &
  other=$!
  wrk -t1 -c8 -d3s "http://127.0.0.1:$p2/api/bench" >/dev/null
  wait "$other"
done
echo "| state | resident (VmRSS) | peak (VmHWM) |"
echo "|---|---:|---:|"
echo "| 10 profiles, 2 proxies, idle | $idle | |"
echo "| after $(proxied) proxied requests | $(rss VmRSS) | $(rss VmHWM) |"
echo

# get --agent vs get on a warm file cache, for profile p2's client.
export XDG_CACHE_HOME="$work/cache"
export FRESHTOKEN_TOKEN_URL="$base/oauth/token" FRESHTOKEN_CLIENT_ID=c2 FRESHTOKEN_CLIENT_SECRET=secret-2
"$bin" get >/dev/null
printf 'a small file, as a bare process reads it\n' >"$work/small.txt"
hyperfine --style basic --warmup 20 --runs "$runs" -N --export-markdown "$work/get.md" \
  -n 'cat (a small file: the floor of a process)' "cat $work/small.txt" \
  -n 'freshtoken get (warm file cache)' "$bin get" \
  -n 'freshtoken get --agent' "$bin --profile p2 get --agent $sock" >/dev/null
cat "$work/get.md"
echo
AGENT_SOCKET=$sock AGENT_PROFILE=p2 benches/cli/startup.sh "$bin" "$work/small.txt"
