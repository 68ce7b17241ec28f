#!/usr/bin/env bash
# Writes scripts/startup-order.txt: the functions that start-up and the warm paths run, in the
# order they are first met, for the linker's --symbol-ordering-file (scripts/release.sh).
# Laid out together they fill a few 64 KiB blocks of .text instead of touching most of them:
# each first touch of a block maps the whole block (the kernel's fault-around), so scattered
# start-up code costs page faults on every start and resident memory for as long as the
# process lives (docs/BENCHMARKS.md, issue 21).
#
# The paths run, each under valgrind's callgrind (mangled names): `--version`; a warm `get`
# on a file cache; an agent with 10 profiles and 2 proxies starting, serving `get --agent`,
# a request through each proxy and a scrape of /metrics, then stopping; the proxy forwarding
# a request. Names that a later build no longer has are skipped by the linker, so a stale
# file costs only layout, never correctness.
#
# Usage: scripts/startup-order.sh BIN   (BIN: an unstripped build, e.g. release.sh's
#        target/release-static/x86_64-unknown-linux-gnu/release/freshtoken)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "$1")
out=$PWD/scripts/startup-order.txt
command -v valgrind >/dev/null || { echo "startup-order: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
if [ "$(readelf -S "$bin" 2>/dev/null | grep -c '\.symtab')" = 0 ]; then
  echo "startup-order: $bin has no symbols; build it with CARGO_PROFILE_RELEASE_STRIP=none" >&2
  exit 1
fi

work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cg() { valgrind --tool=callgrind --demangle=no --callgrind-out-file="$work/cg.$1" "${@:2}"; }

# shellcheck source=benches/agent/config.sh
. benches/agent/config.sh
"$bin" dev-server --client bench:bench-secret "${agent_clients[@]}" >"$work/server.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q '^freshtoken dev-server on' "$work/server.out" 2>/dev/null && break; sleep 0.05; done
base=$(head -n1 "$work/server.out" | awk '{print $NF}')

cg 1-version "$bin" --version >/dev/null 2>&1
(
  export FRESHTOKEN_TOKEN_URL="$base/oauth/token" FRESHTOKEN_CLIENT_ID=bench FRESHTOKEN_CLIENT_SECRET=bench-secret
  export XDG_CACHE_HOME="$work/cache"
  "$bin" get >/dev/null
  cg 2-get "$bin" get >/dev/null 2>&1
)

p1=$(port) p2=$(port)
agent_config "$work" "$base" "$p1" "$p2" >"$work/agent.toml"
mkdir -m 700 "$work/run"
agent_secrets
# exec: the background job is valgrind itself, so that SIGTERM reaches the agent.
(export XDG_CACHE_HOME="$work/agent-cache"; exec valgrind --tool=callgrind --demangle=no \
  --callgrind-out-file="$work/cg.3-agent" "$bin" --config "$work/agent.toml" agent) 2>"$work/agent.log" &
agent=$!
pids+=("$agent")
for _ in $(seq 300); do
  [ "$(curl -s -m 1 --unix-socket "$work/run/agent.sock" http://agent/readyz 2>/dev/null)" = "ready" ] && break
  sleep 0.2
done
[ "$(curl -s -m 1 --unix-socket "$work/run/agent.sock" http://agent/readyz 2>/dev/null)" = "ready" ] ||
  { echo "startup-order: the agent did not get ready under valgrind:" >&2; cat "$work/agent.log" >&2; exit 1; }
cg 4-get-agent "$bin" --config "$work/agent.toml" --profile p2 get --agent "$work/run/agent.sock" >/dev/null 2>&1
curl -s -o /dev/null "http://127.0.0.1:$p1/__stats"
curl -s -o /dev/null "http://127.0.0.1:$p2/__stats"
curl -s -o /dev/null --unix-socket "$work/run/agent.sock" http://agent/metrics
kill -TERM "$agent"
wait "$agent" 2>/dev/null || true

p3=$(port)
(export FRESHTOKEN_TOKEN_URL="$base/oauth/token" FRESHTOKEN_CLIENT_ID=bench FRESHTOKEN_CLIENT_SECRET=bench-secret \
  XDG_CACHE_HOME="$work/proxy-cache"; exec valgrind --tool=callgrind --demangle=no \
  --callgrind-out-file="$work/cg.5-proxy" "$bin" proxy --listen "127.0.0.1:$p3" --upstream "$base") 2>"$work/proxy.log" &
proxy=$!
pids+=("$proxy")
for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$p3/__stats" 2>/dev/null && break; sleep 0.2; done
curl -s -o /dev/null "http://127.0.0.1:$p3/__stats"
kill -TERM "$proxy"
wait "$proxy" 2>/dev/null || true

# Every function with a cost or a call in a profile (Rust's and the C library's), the first
# profile's first; mangled, one per line, as lld's --symbol-ordering-file reads them.
python3 - "$out" "$work"/cg.* <<'EOF'
import re, sys
out, files = sys.argv[1], sorted(sys.argv[2:])
seen, order = set(), []
name = re.compile(r'^c?fn=\(\d+\) (\S+)$')
for path in files:
    for line in open(path, errors='replace'):
        m = name.match(line.rstrip('\n'))
        # Code callgrind could not name is listed by its address, which means nothing to
        # the linker; a function met recursively is named again with "'DEPTH" appended.
        if not m or m.group(1).startswith('0x'):
            continue
        symbol = re.sub(r"'\d+$", '', m.group(1))
        if symbol not in seen:
            seen.add(symbol)
            order.append(symbol)
with open(out, 'w') as f:
    f.write('\n'.join(order) + '\n')
print(f'startup-order: {len(order)} functions from {len(files)} profiles -> {out}')
EOF
