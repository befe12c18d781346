#!/usr/bin/env bash
# Opt-in: build the real image and drive it, on a machine with no container registry.
#
#   sudo packaging/test-image.sh
#
# 1. buildah, podman, runc and debootstrap from apt (when missing);
# 2. a Python 3.11 base image made with debootstrap from the Debian mirror (cached);
# 3. `buildah bud --isolation=chroot` of the Dockerfile with BASE set to that image;
# 4. the image run with runc: /healthz, its own HEALTHCHECK command, and an `npm install`
#    of a package published into it; then a graceful stop.
# Exits non-zero, loudly, at the first step that fails.
set -euo pipefail
cd "$(dirname "$0")/.."
die() { printf '\ntest-image: ERROR: %s\n' "$*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "run as root (buildah chroot builds and runc need it)"

need=()
for tool in buildah podman runc debootstrap; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [[ ${#need[@]} -gt 0 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends buildah podman runc debootstrap \
        || die "apt-get install buildah podman runc debootstrap failed"
fi

BASE_IMAGE=localhost/gati-py311-base:bookworm
if ! podman image exists "$BASE_IMAGE"; then
    MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    MIRROR=${MIRROR:-http://deb.debian.org/debian}
    ROOTFS=$(mktemp -d /tmp/gati-rootfs.XXXXXX)
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$ROOTFS" "$MIRROR" \
        || die "debootstrap failed"
    rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
    tar -C "$ROOTFS" -c . | podman import --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$ROOTFS"
fi

IMAGE=localhost/gati-private-registry:test
CA=/etc/ssl/certs/ca-certificates.crt
buildah bud --isolation=chroot --network=host -v "$CA:$CA:ro" \
    --build-arg BASE="$BASE_IMAGE" -t "$IMAGE" . || die "image build failed"
buildah inspect --type image "$IMAGE" | python3 -c '
import json, sys
cfg = json.load(sys.stdin)["OCIv1"]["config"]
assert cfg["Entrypoint"] == ["/venv/bin/gati-registry", "serve"], cfg["Entrypoint"]
assert "8080/tcp" in cfg["ExposedPorts"], cfg
assert cfg["User"] == "10001", cfg["User"]
print("image config: entrypoint, port and user as expected")'

PORT=${PORT:-18089}
NAME=gati-image-test-$$
podman --runtime /usr/sbin/runc --cgroup-manager=cgroupfs run -d --name "$NAME" \
    -p "$PORT:8080" --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 \
    -e GATI_REGISTRY_ADMIN_PASSWORD=image-admin-1 -e GATI_REGISTRY_APPROVALS__DEFAULT_MODE=auto \
    "$IMAGE" >/dev/null || die "podman run failed"
trap 'podman --runtime /usr/sbin/runc stop -t 40 "$NAME" >/dev/null 2>&1 || true; podman rm -f "$NAME" >/dev/null 2>&1 || true' EXIT
for _ in $(seq 150); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "http://127.0.0.1:$PORT/healthz" || die "no /healthz from the container: $(podman logs "$NAME" 2>&1 | tail -20)"
echo
podman --runtime /usr/sbin/runc exec "$NAME" /venv/bin/python -c \
    "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)" \
    || die "the image's HEALTHCHECK command fails inside the container"

TOKEN=$(podman --runtime /usr/sbin/runc exec "$NAME" /venv/bin/gati-registry token create --user admin --scope publish)
WORK=$(mktemp -d /tmp/gati-image-npm.XXXXXX)
mkdir -p "$WORK/pkg" "$WORK/app"
printf '{"name":"@corp/image-test","version":"1.0.0","main":"index.js"}\n' > "$WORK/pkg/package.json"
printf 'module.exports = 42;\n' > "$WORK/pkg/index.js"
printf 'registry=http://127.0.0.1:%s/npm/\n//127.0.0.1:%s/npm/:_authToken=%s\n' "$PORT" "$PORT" "$TOKEN" > "$WORK/npmrc"
(cd "$WORK/pkg" && npm publish --userconfig "$WORK/npmrc" >/dev/null 2>&1) || die "npm publish into the image failed"
printf '{"name":"app","version":"0.0.0","private":true,"dependencies":{"@corp/image-test":"1.0.0"}}\n' > "$WORK/app/package.json"
(cd "$WORK/app" && npm install --userconfig "$WORK/npmrc" --cache "$WORK/cache" >/dev/null) || die "npm install from the image failed"
node -e "if (require('$WORK/app/node_modules/@corp/image-test') !== 42) process.exit(1)" || die "the installed module does not load"
rm -rf "$WORK"
podman --runtime /usr/sbin/runc stop -t 40 "$NAME" >/dev/null
code=$(podman inspect "$NAME" --format '{{.State.ExitCode}}')
[[ "$code" == 0 ]] || die "the container did not stop cleanly (exit $code): $(podman logs "$NAME" 2>&1 | tail -20)"
echo "test-image: OK (built, healthy, npm publish + install, graceful stop)"
