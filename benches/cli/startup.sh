#!/usr/bin/env bash
# Start-up cost of `freshtoken`, next to `cat` of a small file (the floor of any process) in
# the same run: instructions (valgrind's callgrind: repeatable on a busy machine), then CPU
# time and page faults (perf stat, software events, 50 runs). Called by scripts/bench.sh
# with the environment of a warm file cache; `freshtoken get --agent SOCKET` is measured too
# when AGENT_SOCKET (and AGENT_PROFILE) are set.
# Usage: benches/cli/startup.sh BIN SMALL_FILE
set -euo pipefail
bin=$1 small=$2
cmds=("cat $small" "$bin --version" "$bin get")
[ -n "${AGENT_SOCKET:-}" ] && cmds+=("$bin --profile ${AGENT_PROFILE:-default} get --agent $AGENT_SOCKET")

echo "| command | instructions (callgrind) | CPU time (perf stat) | page faults |"
echo "|---|---:|---:|---:|"
for c in "${cmds[@]}"; do
  ir=n/a cpu=n/a faults=n/a
  if command -v valgrind >/dev/null; then
    # shellcheck disable=SC2086 # the command is words on purpose
    ir=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null $c 2>&1 >/dev/null \
      | sed -n 's/.*Collected : \([0-9]*\).*/\1/p')
  fi
  if command -v perf >/dev/null; then
    # shellcheck disable=SC2086
    stat=$(perf stat -r 50 -x, -e task-clock,page-faults $c 2>&1 >/dev/null || true)
    cpu=$(awk -F, '$3 ~ /task-clock/ {printf "%.2f ms", $1}' <<<"$stat")
    faults=$(awk -F, '$3 ~ /page-faults/ {printf "%d", $1}' <<<"$stat")
  fi
  echo "| \`${c/#$bin/freshtoken}\` | $ir | ${cpu:-n/a} | ${faults:-n/a} |"
done
