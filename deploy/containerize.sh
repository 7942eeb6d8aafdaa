#!/usr/bin/env bash
# Build the service's container image on this machine: a versioned Bento, then `bentoml containerize`.
#
#   deploy/containerize.sh 0.2.0                   # -> Bento inference:0.2.0 and image localhost/inference:0.2.0
#   deploy/containerize.sh --base local 0.2.0      # on a Debian base made here (no registry; root)
#   deploy/containerize.sh --engine docker 0.2.0   # docker instead of podman (a running dockerd)
#   BASE_REBUILD=1 deploy/containerize.sh --base local 0.2.0   # make the local Debian base image again
#   REBUILD=1 deploy/containerize.sh 0.2.0         # replace an existing Bento 0.2.0 by one of the working tree
#
# --base slim (default, also BASE=slim): bentofile.yaml's base, the Python project's image from Docker Hub;
#   BentoML's template installs uv with pip. What `bentoml build` + `bentoml containerize` do by themselves; no root
#   where the engine runs rootless (rootless podman, or a user in the docker group).
# --base local (BASE=local): a minimal Debian with Python 3.11 and uv, made here with debootstrap and imported into
#   the engine (`podman import` or `docker import`): no registry is needed; needs root.
# --engine podman (default, also ENGINE=podman) or docker: `bentoml containerize --backend`.
#
# As root, installs podman, runc and debootstrap with apt when they are missing (docker.io too, but the script does
# not start dockerd); otherwise names them. The models are the ones pinned in bentofile.yaml, taken from the model
# store ($BENTOML_HOME); the Python packages are requirements/runtime.txt. A Bento version is built once, for one
# base: run again with the same version, the script containerizes the existing Bento.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
BASE="${BASE:-slim}"
ENGINE="${ENGINE:-podman}"
VERSION="${BENTO_VERSION:-0.1.0}"
while (($#)); do
    case "$1" in
        --base) BASE="${2:-}"; shift 2 || usage ;;
        --base=*) BASE="${1#*=}"; shift ;;
        --engine) ENGINE="${2:-}"; shift 2 || usage ;;
        --engine=*) ENGINE="${1#*=}"; shift ;;
        -h|--help) usage ;;
        -*) echo "containerize: unknown option $1" >&2; usage ;;
        *) VERSION="$1"; shift ;;
    esac
done
[[ "$BASE" == local || "$BASE" == slim ]] || { echo "containerize: --base is local or slim, not '$BASE'" >&2; exit 2; }
[[ "$ENGINE" == podman || "$ENGINE" == docker ]] || { echo "containerize: --engine is podman or docker, not '$ENGINE'" >&2; exit 2; }

if [[ "$BASE" == local && $(id -u) -ne 0 ]]; then
    echo "containerize: --base local needs root (debootstrap); run it with sudo, or use the registry base (--base slim)" >&2
    exit 2
fi
PYTHON="$(command -v "${PYTHON:-.venv/bin/python}")" || { echo "containerize: no Python at ${PYTHON:-.venv/bin/python} (run make install)" >&2; exit 2; }
BENTOML="$(cd "$(dirname "$PYTHON")" && pwd)/bentoml"  # absolute: containerize runs from /
DEBIAN_SUITE=bookworm
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
UV_VERSION=0.13.8
BASE_IMAGE="$("$PYTHON" -m deploy.bases image "$BASE")"  # local: bentofile.yaml's docker.base_image
IMAGE="localhost/inference:$VERSION"  # the same name with both engines (docker would say docker.io/library/...)
export CONTAINERS_CONF="$PWD/deploy/containers.conf"
export BENTOML_DO_NOT_TRACK=true

log() { echo "containerize: $*" >&2; }

missing=()
if [[ "$ENGINE" == podman ]]; then
    command -v podman >/dev/null || missing+=(podman)
    command -v runc >/dev/null || missing+=(runc)
else
    command -v docker >/dev/null || missing+=(docker.io)
fi
[[ "$BASE" == local ]] && { command -v debootstrap >/dev/null || missing+=(debootstrap); }
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        log "missing ${missing[*]}: install them (apt-get install ${missing[*]}), or run this as root"
        exit 2
    fi
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [[ "$ENGINE" == docker ]] && ! docker info >/dev/null 2>&1; then
    log "no Docker engine answers; start one, e.g. \`dockerd --bridge=none --iptables=false &\` (docs/deployment.md)"
    exit 2
fi

image_exists() {
    if [[ "$ENGINE" == podman ]]; then podman image exists "$1"; else docker image inspect "$1" >/dev/null 2>&1; fi
}

started=$(date +%s)
if [[ "$BASE" == local ]] && { [[ -n "${BASE_REBUILD:-}" ]] || ! image_exists "$BASE_IMAGE"; }; then
    log "building the base image $BASE_IMAGE (debootstrap $DEBIAN_SUITE, about a minute)"
    rootfs=$(mktemp -d /var/tmp/inference-base.XXXXXX)
    wheels=$(mktemp -d)
    trap 'rm -rf "$rootfs" "$wheels"' EXIT
    debootstrap --variant=minbase --include=python3,ca-certificates "$DEBIAN_SUITE" "$rootfs" "$DEBIAN_MIRROR" >/dev/null
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
    # uv installs the Python packages during the build (BentoML's template uses it when present, else pip-installs
    # it); a static binary, pinned.
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: -d "$wheels" "uv==$UV_VERSION"
    "$PYTHON" - "$wheels" "$rootfs/usr/local/bin/uv" <<'PY'
import pathlib, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("uv-*.whl"))
with zipfile.ZipFile(wheel) as archive:
    name = next(n for n in archive.namelist() if n.endswith(".data/scripts/uv"))
    target = pathlib.Path(sys.argv[2])
    target.write_bytes(archive.read(name))
    target.chmod(0o755)
PY
    # The same tarball and settings into either engine's image store.
    tar -C "$rootfs" -c . | "$ENGINE" import \
        --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
        --change 'ENV UV_NATIVE_TLS=1' \
        --change 'CMD ["/bin/bash"]' \
        - "$BASE_IMAGE" >/dev/null
fi

if "$BENTOML" get "inference:$VERSION" >/dev/null 2>&1 && [[ -z "${REBUILD:-}" ]]; then
    built_on="$("$PYTHON" -m deploy.bases of-bento "inference:$VERSION")"
    if [[ "$built_on" != "$BASE_IMAGE" ]]; then
        log "the Bento inference:$VERSION was built for the base $built_on, not $BASE_IMAGE (--base $BASE):"
        log "use another version, or REBUILD=1 to replace it"
        exit 2
    fi
    log "using the existing Bento inference:$VERSION (REBUILD=1 replaces it with one of the working tree)"
else
    [[ -n "${REBUILD:-}" ]] && "$BENTOML" delete -y "inference:$VERSION" >/dev/null 2>&1 || true
    log "building the Bento inference:$VERSION on the base $BASE_IMAGE"
    # BentoML renders the Containerfile from the Bento's recorded build options, and `bentoml containerize` cannot
    # override the base: the slim Bento is built from a copy of bentofile.yaml with only docker.base_image changed
    # (deploy/bases.py); paths in it stay relative to the build context, the project.
    bentofile=$(mktemp --suffix=.yaml)
    "$PYTHON" -m deploy.bases bentofile "$BASE" "$bentofile"
    "$BENTOML" build --bentofile "$bentofile" --version "$VERSION" . >/dev/null
    rm -f "$bentofile"
fi

log "building the image $IMAGE with $ENGINE"
containerize=(--backend "$ENGINE" -t "$IMAGE")
if [[ "$ENGINE" == podman ]]; then
    # The build's package downloads trust what this machine trusts (its CA bundle is mounted over the image's during
    # the build only; the image keeps Debian's). docker build cannot mount host files: with docker the image's own
    # CA bundle is used.
    containerize+=(--opt "volume=/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro")
else
    # A dockerd started with --bridge=none (where no bridge can be made) gives build steps no network: the
    # package downloads then use the host's.
    docker network inspect bridge >/dev/null 2>&1 || containerize+=(--opt network=host)
    # BentoML asks for BuildKit, which a docker CLI of 23 or newer runs through the buildx plugin only; without
    # it, the classic builder (BentoML then renders no cache mounts). DOCKER_BUILDKIT set by the caller wins.
    if [[ -z "${DOCKER_BUILDKIT:-}" ]] && ! docker buildx version >/dev/null 2>&1; then
        log "docker has no buildx plugin: building with the classic builder (DOCKER_BUILDKIT=0)"
        export DOCKER_BUILDKIT=0
    fi
fi
# From / : BentoML refuses a Containerfile template outside the working directory, and containerize copies the
# Bento to a temporary directory first.
(cd / && "$BENTOML" containerize "inference:$VERSION" "${containerize[@]}") >&2
seconds=$(($(date +%s) - started))
size=$("$ENGINE" image inspect "$IMAGE" --format '{{.Size}}')
log "built $IMAGE on $BASE_IMAGE with $ENGINE in ${seconds}s, $((size / 1024 / 1024)) MiB"
echo "$IMAGE"
