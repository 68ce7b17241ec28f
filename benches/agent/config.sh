# The agent the benchmarks measure, sourced by benches/agent/run.sh and scripts/startup-order.sh:
# 10 profiles (client cI with secret secret-I from $SECRET_I, one file sink each) and 2 proxies
# (for p0 and p1) in front of one upstream.
#   "${agent_clients[@]}"            the dev-server's --client flags for those clients
#   agent_config WORK BASE P1 P2     the config on stdout (socket WORK/run/agent.sock, sinks in WORK)
#   agent_secrets                    exports SECRET_0 … SECRET_9
agent_clients=()
for i in $(seq 0 9); do agent_clients+=(--client "c$i:secret-$i"); done

agent_config() {
  local work=$1 base=$2 p1=$3 p2=$4 i
  echo "[agent]"
  echo "socket = \"$work/run/agent.sock\""
  for i in $(seq 0 9); do
    printf '[profiles.p%d]\ntoken_url = "%s/oauth/token"\nclient_id = "c%d"\nclient_secret = { env = "SECRET_%d" }\n' "$i" "$base" "$i" "$i"
    printf '[[profiles.p%d.sinks]]\npath = "%s/p%d.token"\n' "$i" "$work" "$i"
  done
  printf '[[proxy]]\nprofile = "p0"\nlisten = "127.0.0.1:%s"\nupstream = "%s"\n' "$p1" "$base"
  printf '[[proxy]]\nprofile = "p1"\nlisten = "127.0.0.1:%s"\nupstream = "%s"\n' "$p2" "$base"
}

agent_secrets() {
  local i
  for i in $(seq 0 9); do export "SECRET_$i=secret-$i"; done
}
