"""The base images the service's image is built on (`deploy/containerize.sh --base local|slim`).

- `slim` (the default): bentofile.yaml's `docker.base_image`, the Python project's Debian image from Docker Hub;
  BentoML's template installs uv in it with pip. Plain `bentoml build` + `bentoml containerize` use it.
- `local`: a minimal Debian bookworm with Python 3.11 and uv that deploy/containerize.sh makes on the build
  machine (debootstrap, then `podman import` or `docker import`): no registry needed, root needed.

bentofile.yaml fixes `docker.base_image`, and BentoML renders the Containerfile from the Bento's own build options
at containerize time (`bentoml containerize` has no option for the base), so another base means a Bento built from
a copy of bentofile.yaml with only that field changed (`bentofile_for`). The Bento then records its base.

    python -m deploy.bases image slim             # the base's image reference
    python -m deploy.bases bentofile slim FILE    # write bentofile.yaml with that base to FILE
    python -m deploy.bases of-bento inference:0.2.0   # the base a stored Bento was built for
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BENTOFILE = ROOT / "bentofile.yaml"
# deploy/containerize.sh's DEBIAN_SUITE and UV_VERSION name it (a test holds them together).
LOCAL_IMAGE = "localhost/inference-base:bookworm-py3.11-uv0.13.8"


def base_images() -> dict[str, str]:
    # Fully qualified in bentofile.yaml: podman does not guess a registry for a short name.
    slim = yaml.safe_load(BENTOFILE.read_text())["docker"]["base_image"]
    return {"local": LOCAL_IMAGE, "slim": slim}


def bentofile_for(base: str) -> str:
    """bentofile.yaml's text with `docker.base_image` set to the base's image (the file itself for `slim`)."""
    text = BENTOFILE.read_text()
    if base == "slim":
        return text
    config = yaml.safe_load(text)
    config["docker"]["base_image"] = base_images()[base]
    return yaml.safe_dump(config, sort_keys=False)


def bento_base_image(tag: str) -> str | None:
    import bentoml

    return bentoml.get(tag).info.docker.base_image


def main(argv: list[str]) -> int:
    match argv:
        case ["image", base] if base in base_images():
            print(base_images()[base])
        case ["bentofile", base, path] if base in base_images():
            Path(path).write_text(bentofile_for(base))
        case ["of-bento", tag]:
            print(bento_base_image(tag) or "")
        case _:
            print(__doc__, file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
