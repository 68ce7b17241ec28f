# One wrk run and the CPU its target spent, sourced by benches/proxy/run.sh and dpop.sh.
# Needs $threads, $conns and $work (and WRK_SECONDS, default 10).
#   wrk_run URL PID...   prints "requests/s p50_us p99_us cpu_us_per_request
#                        user_us_per_request non_2xx" for PID... (all their threads;
#                        CPU = user + system)

# CPU time of processes $@ and all their threads, in clock ticks: "user system".
ticks() {
  local pid
  for pid in "$@"; do cat /proc/"$pid"/task/*/stat; done | awk '{u += $14; s += $15} END {print u + 0, s + 0}'
}
hz=$(getconf CLK_TCK)

wrk_run() {
  local url=$1; shift
  local u0 s0 u1 s1
  read -r u0 s0 < <(ticks "$@")
  wrk -t"$threads" -c"$conns" -d"${WRK_SECONDS:-10}"s --latency "$url" >"$work/wrk.out"
  read -r u1 s1 < <(ticks "$@")
  awk -v user=$((u1 - u0)) -v sys=$((s1 - s0)) -v hz="$hz" '
    function us(v) { if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000; return v * 1000000 }
    function per(t) { return n ? t * 1000000 / hz / n : 0 }
    /^ +50%/ {p50 = us($2)} /^ +99%/ {p99 = us($2)} /^Requests\/sec/ {rps = $2}
    / requests in / {n = $1}
    /Non-2xx/ {bad = $NF}
    END {printf "%d %d %d %.1f %.1f %d\n", rps, p50, p99, per(user + sys), per(user), bad + 0}' "$work/wrk.out"
}
