#!/usr/bin/env bash
# The proxy's benchmark (called by scripts/bench.sh, or alone after `cargo build --release`):
# wrk against a small upstream (nginx, one worker, a process of its own), in ROUNDS rounds of
# three runs each — direct, through nginx as a reverse proxy with a static Authorization
# header, through `freshtoken proxy` — so that the three share each moment's machine. Prints
# every run with the proxy's CPU time per request (user + system, and user alone, from /proc),
# then the medians, each proxy's added p50 (its p50 minus the same round's direct p50) and
# the number of rounds in which freshtoken's p50 was at or under nginx's.
#   ROUNDS (10), WRK_SECONDS (10), CONNS (32; CONNS=1 gives one request at a time, as a
#   script makes them), BIN (target/release/freshtoken).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${BIN:-$PWD/target/release/freshtoken}
rounds=${ROUNDS:-10}
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
export XDG_CACHE_HOME="$work/cache"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up_port=$(free_port); nginx_port=$(free_port)
mkdir -p "$work/nginx" "$work/upstream"
token=$("$bin" get)
sed -e "s#@DIR@#$work/upstream#g" -e "s#@UPSTREAM@#$up_port#g" \
  benches/proxy/upstream.conf.template >"$work/upstream/nginx.conf"
nginx -p "$work/upstream" -c "$work/upstream/nginx.conf" -g 'daemon off;' 2>>"$work/upstream/error.log" &
pids+=($!)
sed -e "s#@DIR@#$work/nginx#g" -e "s#@UPSTREAM@#$up_port#g" -e "s#@NGINX@#$nginx_port#g" -e "s#@TOKEN@#$token#g" \
  benches/proxy/nginx.conf.template >"$work/nginx/nginx.conf"
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' 2>>"$work/nginx/error.log" &
nginx_pid=$!
pids+=($!)
"$bin" proxy --upstream "http://127.0.0.1:$up_port" >"$work/proxy.out" 2>/dev/null &
proxy_pid=$!
pids+=($!)
for _ in $(seq 100); do
  grep -q '^freshtoken proxy on' "$work/proxy.out" 2>/dev/null &&
    curl -s -m 1 -o /dev/null "http://127.0.0.1:$nginx_port/" && break
  sleep 0.05
done
proxy_url=$(awk '{print $4}' "$work/proxy.out")

# shellcheck source=benches/proxy/wrk.sh
. "$(dirname "$0")/wrk.sh"

echo "wrk -t$threads -c$conns -d${WRK_SECONDS:-10}s --latency; $rounds rounds"
echo "| round | direct req/s (p50) | nginx req/s (p50, p99; CPU/req, user) | freshtoken req/s (p50, p99; CPU/req, user) |"
echo "|---:|---:|---:|---:|"
nginx_pids="$nginx_pid $(pgrep -P "$nginx_pid" | tr '\n' ' ')"
: >"$work/rounds"
for round in $(seq "$rounds"); do
  read -r d_rps d_p50 _ _ _ _ < <(wrk_run "http://127.0.0.1:$up_port/")
  # shellcheck disable=SC2086
  read -r n_rps n_p50 n_p99 n_cpu n_user _ < <(wrk_run "http://127.0.0.1:$nginx_port/" $nginx_pids)
  read -r f_rps f_p50 f_p99 f_cpu f_user _ < <(wrk_run "$proxy_url/" "$proxy_pid")
  echo "| $round | $d_rps ($d_p50 µs) | $n_rps ($n_p50, $n_p99 µs; $n_cpu, $n_user µs) | $f_rps ($f_p50, $f_p99 µs; $f_cpu, $f_user µs) |"
  echo "$d_rps $d_p50 $n_rps $n_p50 $f_rps $f_p50" >>"$work/rounds"
done

median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2)}'; }
col() { awk -v c="$1" '{print $c}' "$work/rounds" | median; }
added() { awk -v c="$1" '{print $c - $2}' "$work/rounds" | median; }
ratio() { awk '{printf "%d\n", 100 * $5 / $3}' "$work/rounds" | median; }
echo
echo "medians of $rounds rounds:"
echo "| path | requests/s | p50 | added p50 |"
echo "|---|---:|---:|---:|"
echo "| direct | $(col 1) | $(col 2) µs | |"
echo "| nginx | $(col 3) | $(col 4) µs | $(added 4) µs |"
echo "| freshtoken | $(col 5) | $(col 6) µs | $(added 6) µs |"
echo "freshtoken's throughput as a share of nginx's (median of the rounds' ratios): $(ratio) %"
echo "rounds in which freshtoken's p50 was at or under nginx's: $(awk '$6 <= $4' "$work/rounds" | wc -l) of $rounds"
