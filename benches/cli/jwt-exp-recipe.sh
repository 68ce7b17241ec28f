#!/usr/bin/env bash
# The shell recipe people write today to reuse a cached token: decode the JWT payload,
# compare `exp` with the clock, and only re-fetch when it is close to expiry.
# Used by scripts/bench.sh as the baseline for `freshtoken get` on a warm cache.
set -euo pipefail
token_file=$1
token=$(cat "$token_file")
payload=$(printf '%s' "$token" | cut -d. -f2 | tr '_-' '/+')
case $(( ${#payload} % 4 )) in
  2) payload="$payload==" ;;
  3) payload="$payload=" ;;
esac
exp=$(printf '%s' "$payload" | base64 -d | jq -r .exp)
now=$(date +%s)
if [ $(( exp - now )) -gt 60 ]; then
  printf '%s\n' "$token"
else
  echo "token expired: would curl the token endpoint here" >&2
  exit 1
fi
