"""Session fixtures: demo models trained into a temporary BentoML store, and real `bentoml serve` processes.

BENTOML_HOME must point at the temporary store before bentoml is imported anywhere, so it is set here, at
collection time, not in a fixture.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="inference-tests-"))
os.environ["BENTOML_HOME"] = str(_SESSION_DIR / "bentoml")
os.environ["BENTOML_DO_NOT_TRACK"] = "true"
os.environ.pop("INFERENCE_SKILLS_VERSION", None)
os.environ.pop("INFERENCE_SKILL_VERSIONS", None)
# Every server of the session takes ratings with it (tests/utils/requests.py RATINGS_AUTH).
os.environ["INFERENCE_RATINGS_TOKEN"] = "test-ratings-token-0123456789abcdef"

import pytest  # noqa: E402

from inference.families import get_family  # noqa: E402
from inference.families.skills.family import import_skill_artifacts, load_skill_models  # noqa: E402
from inference.families.skills.scoring import SkillModel  # noqa: E402
from tests.utils.needs import unavailable  # noqa: E402
from tests.utils.redis_server import RedisServer  # noqa: E402
from tests.utils.servers import RunningServer, start_server  # noqa: E402
from train.data.catalogue import SKILLS  # noqa: E402
from train.intent import IntentTrainingParams, train_intent  # noqa: E402
from train.skills import SkillTrainingParams, train_skills  # noqa: E402
from train.textpair import TextPairTrainingParams, train_textpair  # noqa: E402

CPP_HEADERS = ("/usr/include/nlohmann/json.hpp", "/usr/include/x86_64-linux-gnu/curl/curl.h")
STABLE = "v1.0.0"
CANDIDATE = "v1.1.0"
# The stable version is the demo model `make serve` trains (so README examples match); the candidate differs.
TEST_PARAMS = SkillTrainingParams()
CANDIDATE_PARAMS = SkillTrainingParams(seed=11, n_students=8_000, n_estimators=160, max_depth=3)
# Smaller than the demo models (4k queries, 30 trees: a few seconds), same structure.
TEST_INTENT_PARAMS = IntentTrainingParams(n_queries=4_000, forest_trees=30, boosting_rounds=30)
TEST_TEXTPAIR_PARAMS = TextPairTrainingParams(n_pairs=4_000)


@pytest.fixture(autouse=True)
def logging_as_it_was() -> Iterator[None]:
    """Each test leaves logging as it found it: commands run in process (`basicConfig(force=True)` in the batch and
    retention commands) and the service's configure_logging change the root logger's handlers and level, and the
    `inference` logger's, for the rest of the process otherwise, and a later test's caplog could read nothing."""
    import logging

    root, ours = logging.getLogger(), logging.getLogger("inference")
    kept_root = (root.handlers[:], root.level)
    kept_ours = (ours.handlers[:], ours.level, ours.propagate, ours.disabled)
    yield
    root.handlers[:] = kept_root[0]
    root.setLevel(kept_root[1])
    ours.handlers[:] = kept_ours[0]
    ours.setLevel(kept_ours[1])
    ours.propagate, ours.disabled = kept_ours[2], kept_ours[3]
    logging.disable(logging.NOTSET)


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return _SESSION_DIR


@pytest.fixture(scope="session")
def trained_versions(session_dir: Path) -> dict[str, Path]:
    """Two versions of the 7 skill models, trained and imported once per session."""
    artifacts = {}
    for version, params in ((STABLE, TEST_PARAMS), (CANDIDATE, CANDIDATE_PARAMS)):
        out_dir = session_dir / "artifacts" / "skills" / version
        train_skills(version, params, out_dir)
        import_skill_artifacts(out_dir, version=version)
        artifacts[version] = out_dir
    return artifacts


@pytest.fixture(scope="session")
def text_reports(session_dir: Path) -> dict[str, dict]:
    """The intent and text-pair models, version v1.0.0, trained and imported once per session; their reports."""
    reports = {}
    for family, train, params in (
        ("intent", train_intent, TEST_INTENT_PARAMS),
        ("textpair", train_textpair, TEST_TEXTPAIR_PARAMS),
    ):
        out_dir = session_dir / "artifacts" / family / STABLE
        reports[family] = train(STABLE, params, out_dir)
        get_family(family).import_artifacts(out_dir, STABLE)
    return reports


@pytest.fixture(scope="session")
def stable_models(trained_versions: dict[str, Path]) -> dict[str, SkillModel]:
    return load_skill_models(dict.fromkeys(SKILLS, STABLE))


@pytest.fixture(scope="session")
def server(trained_versions: dict[str, Path], text_reports: dict, session_dir: Path) -> Iterator[RunningServer]:
    """A real `bentoml serve` of service.py pinned to the stable versions, all families."""
    # An ensemble answer slower than its 250 ms budget becomes classic's (tested on servers of their own); the
    # first calls on a busy test machine can take that long, so this server gives the ensemble 10 s.
    env = {"INFERENCE_SKILLS_VERSION": STABLE, "INFERENCE_INTENT_ENSEMBLE_BUDGET_MS": "10000"}
    with start_server(session_dir / "logs", env=env) as running:
        yield running


@pytest.fixture(scope="session")
def service_image(trained_versions: dict[str, Path], text_reports: dict) -> Iterator[str]:
    """The service's container image, built once for the session (tests/test_container.py, test_compose_up.py)."""
    from tests.utils.containers import build_service_image, podman

    image = build_service_image()
    yield image
    podman("rmi", "--force", image, check=False)


@pytest.fixture(scope="session")
def redis_server(session_dir: Path) -> Iterator[RedisServer]:
    """A redis-server process of the tests' own (database 1 is used); tests may stop and restart it."""
    server = RedisServer(session_dir / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client_without_admin(server: RunningServer) -> Iterator[object]:
    import httpx

    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    from tests.utils.postgres import throwaway_database

    with throwaway_database() as url:
        yield url


@pytest.fixture(scope="session")
def slow_server(session_dir: Path, text_reports: dict) -> Iterator[RunningServer]:
    """Intent and text pair only, every model call delayed by 1.5 s and no result cache: a deliberately slow service for the
    clients' timeout and fallback tests."""
    import json

    faults = dict.fromkeys(("intent-classic", "intent-ensemble", "textpair"), "delay_ms=1500")
    env = {
        "INFERENCE_FAMILIES": '["intent", "textpair"]',
        "INFERENCE_INJECT_FAULTS": json.dumps(faults),
        "CACHE_URL": "none://",
    }
    with start_server(session_dir / "logs-slow", env=env) as running:
        yield running


@pytest.fixture(scope="session")
def cpp_build(session_dir: Path) -> Path:
    """The C++ client, its tests and benchmark, built with CMake once per session."""
    import shutil
    import subprocess

    from tests.utils.servers import PROJECT_ROOT

    missing = [tool for tool in ("cmake", "g++") if shutil.which(tool) is None]
    missing += [header for header in CPP_HEADERS if not Path(header).exists()]
    if missing:
        unavailable(
            f"missing {missing} (apt-get install cmake g++ libcurl4-openssl-dev nlohmann-json3-dev libgtest-dev)"
        )
    build = session_dir / "cpp-build"
    configure = ["cmake", "-S", str(PROJECT_ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"]
    subprocess.run(configure, check=True, capture_output=True, text=True)
    compiled = subprocess.run(["cmake", "--build", str(build), "-j2"], capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stdout[-4000:] + compiled.stderr[-4000:]
    return build
