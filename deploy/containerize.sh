#!/usr/bin/env bash
# Build the service's container image on this machine: a versioned Bento, then `bentoml containerize` with podman
# on a local Debian base image (no registry is needed: the base is made with debootstrap and `podman import`).
#
#   deploy/containerize.sh 0.2.0           # -> Bento inference:0.2.0 and image localhost/inference:0.2.0
#   BASE_REBUILD=1 deploy/containerize.sh 0.2.0   # make the Debian base image again
#   REBUILD=1 deploy/containerize.sh 0.2.0        # replace an existing Bento 0.2.0 by one of the working tree
#
# Needs root (debootstrap, rootful podman); installs podman, runc and debootstrap with apt when they are missing.
# The models are the ones pinned in bentofile.yaml, taken from the model store ($BENTOML_HOME). A Bento version is
# built once: run again with the same version, the script containerizes the existing Bento.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
    echo "containerize: needs root (debootstrap and rootful podman); run it with sudo" >&2
    exit 2
fi
VERSION="${1:-${BENTO_VERSION:-0.1.0}}"
PYTHON="$(command -v "${PYTHON:-.venv/bin/python}")" || { echo "containerize: no Python at ${PYTHON:-.venv/bin/python} (run make install)" >&2; exit 2; }
BENTOML="$(cd "$(dirname "$PYTHON")" && pwd)/bentoml"  # absolute: containerize runs from /
DEBIAN_SUITE=bookworm
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
UV_VERSION=0.13.8
BASE_IMAGE="localhost/inference-base:${DEBIAN_SUITE}-py3.11-uv${UV_VERSION}"  # the same as bentofile.yaml
export CONTAINERS_CONF="$PWD/deploy/containers.conf"
export BENTOML_DO_NOT_TRACK=true

log() { echo "containerize: $*" >&2; }

missing=()
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

started=$(date +%s)
if [[ -n "${BASE_REBUILD:-}" ]] || ! podman image exists "$BASE_IMAGE"; then
    log "building the base image $BASE_IMAGE (debootstrap $DEBIAN_SUITE, about a minute)"
    rootfs=$(mktemp -d /var/tmp/inference-base.XXXXXX)
    wheels=$(mktemp -d)
    trap 'rm -rf "$rootfs" "$wheels"' EXIT
    debootstrap --variant=minbase --include=python3,ca-certificates "$DEBIAN_SUITE" "$rootfs" "$DEBIAN_MIRROR" >/dev/null
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
    # uv installs the Python packages during the build (BentoML's template expects it); a static binary.
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: -d "$wheels" "uv==$UV_VERSION"
    "$PYTHON" - "$wheels" "$rootfs/usr/local/bin/uv" <<'EOF'
import pathlib, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("uv-*.whl"))
with zipfile.ZipFile(wheel) as archive:
    name = next(n for n in archive.namelist() if n.endswith(".data/scripts/uv"))
    target = pathlib.Path(sys.argv[2])
    target.write_bytes(archive.read(name))
    target.chmod(0o755)
EOF
    tar -C "$rootfs" -c . | podman import \
        --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
        --change 'ENV UV_NATIVE_TLS=1' \
        --change 'CMD ["/bin/bash"]' \
        - "$BASE_IMAGE" >/dev/null
fi

if "$BENTOML" get "inference:$VERSION" >/dev/null 2>&1 && [[ -z "${REBUILD:-}" ]]; then
    log "using the existing Bento inference:$VERSION (REBUILD=1 replaces it with one of the working tree)"
else
    [[ -n "${REBUILD:-}" ]] && "$BENTOML" delete -y "inference:$VERSION" >/dev/null 2>&1 || true
    log "building the Bento inference:$VERSION"
    "$BENTOML" build --version "$VERSION" >/dev/null
fi
log "building the image localhost/inference:$VERSION"
# The build's package downloads trust what this machine trusts (its CA bundle is mounted over the image's during
# the build only; the image keeps Debian's). From / : BentoML refuses a Containerfile template outside the
# working directory, and containerize copies the Bento to a temporary directory first.
(cd / && "$BENTOML" containerize "inference:$VERSION" --backend podman -t "inference:$VERSION" \
    --opt "volume=/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro") >&2
seconds=$(($(date +%s) - started))
size=$(podman image inspect "localhost/inference:$VERSION" --format '{{.Size}}')
log "built localhost/inference:$VERSION in ${seconds}s, $((size / 1024 / 1024)) MiB"
echo "localhost/inference:$VERSION"
