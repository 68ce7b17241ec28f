#!/usr/bin/env bash
# The proxy with a DPoP-bound token next to the same proxy with a bearer token (called by
# scripts/bench.sh, or alone after `cargo build --release`): wrk against the small nginx
# upstream of run.sh, through two `freshtoken proxy` processes in turn, ROUNDS rounds, so
# that both share each moment's machine. The DPoP proxy signs a fresh ES256 proof for every
# request (the upstream does not check it: this measures the proxy's cost alone). Prints
# each run with the proxy's CPU time per request, then the medians.
#   ROUNDS (5), WRK_SECONDS (10), CONNS (32), DPOP_ALG (ES256; or EdDSA),
#   BIN (target/release/freshtoken).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${BIN:-$PWD/target/release/freshtoken}
rounds=${ROUNDS:-5}
conns=${CONNS:-32}
threads=$((conns < 2 ? conns : 2))
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

"$bin" dev-server --client bench:bench-secret >"$work/server.out" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do grep -q '^freshtoken dev-server on' "$work/server.out" 2>/dev/null && break; sleep 0.05; done
base=$(head -n1 "$work/server.out" | awk '{print $NF}')
export FRESHTOKEN_TOKEN_URL="$base/oauth/token" FRESHTOKEN_CLIENT_ID=bench FRESHTOKEN_CLIENT_SECRET=bench-secret
export XDG_CACHE_HOME="$work/cache" XDG_STATE_HOME="$work/state"
printf '[profiles.dpop]\ndpop = true\ndpop_alg = "%s"\n' "${DPOP_ALG:-ES256}" >"$work/config.toml"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up_port=$(free_port)
mkdir -p "$work/upstream"
sed -e "s#@DIR@#$work/upstream#g" -e "s#@UPSTREAM@#$up_port#g" \
  benches/proxy/upstream.conf.template >"$work/upstream/nginx.conf"
nginx -p "$work/upstream" -c "$work/upstream/nginx.conf" -g 'daemon off;' 2>>"$work/upstream/error.log" &
pids+=($!)
"$bin" --no-config proxy --upstream "http://127.0.0.1:$up_port" >"$work/bearer.out" 2>/dev/null &
bearer_pid=$!
pids+=($!)
"$bin" --config "$work/config.toml" --profile dpop proxy --upstream "http://127.0.0.1:$up_port" >"$work/dpop.out" 2>/dev/null &
dpop_pid=$!
pids+=($!)
for _ in $(seq 100); do
  grep -q '^freshtoken proxy on' "$work/bearer.out" 2>/dev/null &&
    grep -q '^freshtoken proxy on' "$work/dpop.out" 2>/dev/null && break
  sleep 0.05
done
bearer_url=$(awk '{print $4}' "$work/bearer.out")
dpop_url=$(awk '{print $4}' "$work/dpop.out")
curl -sf -o /dev/null "$bearer_url/" && curl -sf -o /dev/null "$dpop_url/"
if ! "$bin" --config "$work/config.toml" --profile dpop get --format json | grep -Eq '"token_type": ?"DPoP"'; then
  echo "the DPoP profile did not get a DPoP token" >&2
  exit 1
fi

# shellcheck source=benches/proxy/wrk.sh
. "$(dirname "$0")/wrk.sh"

echo "wrk -t$threads -c$conns -d${WRK_SECONDS:-10}s --latency; $rounds rounds"
echo "| round | bearer req/s (p50, p99; CPU/req) | DPoP req/s (p50, p99; CPU/req) |"
echo "|---:|---:|---:|"
: >"$work/rounds"
for round in $(seq "$rounds"); do
  read -r b_rps b_p50 b_p99 b_cpu _ b_bad < <(wrk_run "$bearer_url/" "$bearer_pid")
  read -r d_rps d_p50 d_p99 d_cpu _ d_bad < <(wrk_run "$dpop_url/" "$dpop_pid")
  echo "| $round | $b_rps ($b_p50, $b_p99 µs; $b_cpu µs) | $d_rps ($d_p50, $d_p99 µs; $d_cpu µs) |"
  if [ "$b_bad" != 0 ] || [ "$d_bad" != 0 ]; then echo "non-2xx answers: bearer $b_bad, DPoP $d_bad" >&2; exit 1; fi
  echo "$b_rps $b_p50 $b_cpu $d_rps $d_p50 $d_cpu" >>"$work/rounds"
done
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
col() { awk -v c="$1" '{print $c}' "$work/rounds" | median; }
echo
echo "medians of $rounds rounds:"
echo "| token | requests/s | p50 | proxy CPU per request |"
echo "|---|---:|---:|---:|"
echo "| bearer | $(col 1) | $(col 2) µs | $(col 3) µs |"
echo "| DPoP (a proof per request) | $(col 4) | $(col 5) µs | $(col 6) µs |"
echo "DPoP's throughput as a share of bearer's (median of the rounds' ratios): $(awk '{printf "%d\n", 100 * $4 / $1}' "$work/rounds" | median) %"
