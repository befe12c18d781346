#!/usr/bin/env bash
# Run the shared benchmark against Verdaccio and against gati-registry, one after the
# other on this machine, and keep both result files. Loopback only.
#
#   benchmarks/side-by-side.sh [extra bench.py args, e.g. --quick]
#
# Needs: ../shared/bench (wrk, nginx-light, and `verdaccio.sh install` done once),
# gati-registry on PATH. Results: benchmarks/results/{verdaccio,gati}-<date>.{json,txt}
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=${BENCH:-../shared/bench}
OUT=benchmarks/results
mkdir -p "$OUT"
day=$(date +%F)

echo "== load before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$BENCH/peers/verdaccio.sh" reset >/dev/null 2>&1 || true
VERDACCIO_API_JWT=1 "$BENCH/peers/verdaccio.sh" start >/dev/null
URL=$("$BENCH/peers/verdaccio.sh" url)
PID=$(cat /tmp/peers/verdaccio/verdaccio.pid)
python3 "$BENCH/bench.py" --registry "$URL" --user bench --password 'bench-pass-1' \
  --label verdaccio --server-pid "$PID" --results-dir "$OUT" "$@" | tee "$OUT/verdaccio-$day.txt"
"$BENCH/peers/verdaccio.sh" stop

echo "== load between: $(cut -d' ' -f1-3 /proc/loadavg)"
DATA=$(mktemp -d /tmp/gati-bench-data.XXXXXX)
PORT=${PORT:-18080}
# Same access policy as the Verdaccio peer: anonymous reads, token-authenticated writes.
# Verdaccio has no approval step, so versions are approved as they arrive (auto). The
# shared corpus's gati-module.json says `kind`, not the `type` our contract plugin
# requires, and its names are not under a configured scope policy: those two plugins
# would reject every version, so they are not loaded for this comparison.
GATI_REGISTRY_ANONYMOUS_READ=true GATI_REGISTRY_ADMIN_PASSWORD=bench-admin-pass-1 \
    GATI_REGISTRY_APPROVALS__DEFAULT_MODE=auto GATI_REGISTRY_PLUGINS__BLOCKED=names,gati_contract \
  setsid gati-registry serve --port "$PORT" --data "$DATA" >"$DATA/server.log" 2>&1 &
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
GPID=$(pgrep -f "gati-registry serve --port $PORT" | head -1)
TOKEN=$(gati-registry token create --user admin --scope publish --data "$DATA")
python3 "$BENCH/bench.py" --registry "http://127.0.0.1:$PORT/npm/" --token "$TOKEN" \
  --label gati --server-pid "$GPID" --results-dir "$OUT" "$@" | tee "$OUT/gati-$day.txt"
kill "$GPID"; wait "$GPID" 2>/dev/null || true
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"
