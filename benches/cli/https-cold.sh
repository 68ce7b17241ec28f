#!/usr/bin/env bash
# A cold `freshtoken get` over HTTPS next to `curl` making the same token request, in one run
# (called by scripts/bench.sh, or alone after `cargo build --release`). The token endpoint is
# local: the dev-server behind nginx terminating TLS with a certificate from a CA of this
# run's own (openssl), so both clients pay one full TLS handshake per process and nothing
# else differs. Every freshtoken run starts on an empty cache (hyperfine --prepare).
# References: curl trusting only the CA (`--cacert`), and curl trusting the system bundle plus
# the CA (what freshtoken trusts: the platform's roots and --ca-file). Then instructions
# (callgrind) and CPU time (perf stat), which move far less than wall time on a busy machine.
#   RUNS (300), BIN (target/release/freshtoken).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${BIN:-$PWD/target/release/freshtoken}
runs=${RUNS:-300}
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

"$bin" dev-server --client bench:bench-secret >"$work/server.out" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do grep -q '^freshtoken dev-server on' "$work/server.out" 2>/dev/null && break; sleep 0.05; done
base=$(head -n1 "$work/server.out" | awk '{print $NF}')
up_port=${base##*:}

# A CA and a server certificate for 127.0.0.1 (P-256, as most token endpoints' are ECDSA or RSA).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=bench-ca \
  -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
  -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$work/ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
  -days 1 -extfile "$work/ext" -out "$work/server.pem" 2>/dev/null
system_bundle=/etc/ssl/certs/ca-certificates.crt
cat "$system_bundle" "$work/ca.pem" >"$work/system-plus-ca.pem"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tls_port=$(free_port)
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    upstream devserver { server 127.0.0.1:$up_port; keepalive 8; }
    server {
        listen 127.0.0.1:$tls_port ssl;
        ssl_certificate $work/server.pem;
        ssl_certificate_key $work/server.key;
        ssl_session_cache off;
        ssl_session_tickets off;
        location / {
            proxy_pass http://devserver;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' 2>>"$work/nginx/error.log" &
pids+=($!)
url="https://127.0.0.1:$tls_port/oauth/token"
for _ in $(seq 100); do curl -s -m 1 -o /dev/null --cacert "$work/ca.pem" "$url" && break; sleep 0.05; done

export FRESHTOKEN_TOKEN_URL=$url FRESHTOKEN_CLIENT_ID=bench FRESHTOKEN_CLIENT_SECRET=bench-secret
export XDG_CACHE_HOME="$work/cache"
ours="$bin get --ca-file $work/ca.pem"
curl_ca="curl -sf -o /dev/null --cacert $work/ca.pem -u bench:bench-secret -d grant_type=client_credentials $url"
curl_sys="curl -sf -o /dev/null --cacert $work/system-plus-ca.pem -u bench:bench-secret -d grant_type=client_credentials $url"
$ours >/dev/null && $curl_ca && $curl_sys   # all three work before anything is timed
rm -rf "$work/cache"

hyperfine --style basic --warmup 10 --runs "$runs" -N --export-markdown "$work/https.md" \
  -n 'curl --cacert CA (same request, one TLS handshake)' "$curl_ca" \
  -n 'curl --cacert system bundle + CA' "$curl_sys" \
  -n 'freshtoken get --ca-file CA (cold cache)' --prepare "rm -rf $work/cache" "$ours" >/dev/null
cat "$work/https.md"
echo

echo "| command | instructions (callgrind) | CPU time (perf stat, 50 runs) |"
echo "|---|---:|---:|"
names=("curl --cacert CA" "curl --cacert system bundle + CA" "freshtoken get --ca-file CA (cold)")
i=0
for c in "$curl_ca" "$curl_sys" "$ours"; do
  ir=n/a cpu=n/a
  if command -v valgrind >/dev/null; then
    rm -rf "$work/cache"
    # shellcheck disable=SC2086 # the command is words on purpose
    ir=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null $c 2>&1 >/dev/null \
      | sed -n 's/.*Collected : \([0-9]*\).*/\1/p')
  fi
  if command -v perf >/dev/null; then
    # perf stat repeats with no prepare step: the memory cache makes every freshtoken run cold
    # (curl ignores the variable).
    # shellcheck disable=SC2086
    stat=$(FRESHTOKEN_CACHE=memory perf stat -r 50 -x, -e task-clock $c 2>&1 >/dev/null || true)
    cpu=$(awk -F, '$3 ~ /task-clock/ {printf "%.2f ms", $1}' <<<"$stat")
  fi
  echo "| ${names[$i]} | $ir | ${cpu:-n/a} |"
  i=$((i + 1))
done
