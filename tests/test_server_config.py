"""Per-request work the shipped configuration leaves out (access log, tracing spans of the scoring routes), and
the settings that turn it back on, against real `bentoml serve` processes."""

import time

import httpx
import pytest

from tests.utils.requests import RATINGS_AUTH
from tests.utils.servers import start_server

pytestmark = pytest.mark.server

INFER = "/api/v1/skills/infer"
BODY = {"student_id": "s-1", "skill": "leadership", "features": {"leadership_roles_taken": 3}}
REQUEST_ID_HEADER = "x-bentoml-request-id"  # set by BentoML when the request was traced


def access_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if f"path={INFER}" in line]


OIP_INFER = "/v2/models/skill-leadership/infer"
OIP_BODY = {"inputs": [{"name": "features", "shape": [1, 7], "datatype": "FP32", "data": [3, 4, 0.4, 20, 0.3, 5, 120]}]}


def test_by_default_scoring_requests_are_neither_access_logged_nor_traced(server):
    response = httpx.post(server.url + INFER, json=BODY)
    assert response.status_code == 200, response.text
    assert REQUEST_ID_HEADER not in response.headers
    oip = httpx.post(server.url + OIP_INFER, json=OIP_BODY)
    assert oip.status_code == 200, oip.text
    assert REQUEST_ID_HEADER not in oip.headers
    ratings = httpx.post(  # not a scoring route; the token gets it past the edge to BentoML
        server.url + "/api/v1/monitoring/ratings", json={"ratings": []}, headers=RATINGS_AUTH
    )
    assert REQUEST_ID_HEADER in ratings.headers  # still traced, so the header's absence above means something
    time.sleep(1)  # the line would be in the log by now: the test below sees it within ~0.1 s
    assert access_lines(server.log()) == []


def test_access_log_and_tracing_can_be_turned_on(trained_versions, text_reports, session_dir):
    env = {"INFERENCE_SKILLS_VERSION": "v1.0.0", "INFERENCE_ACCESS_LOG": "true", "INFERENCE_TRACE_SCORING": "true"}
    with start_server(session_dir / "logs-access", env=env) as server:
        response = httpx.post(server.url + INFER, json=BODY)
        assert response.status_code == 200, response.text
        assert REQUEST_ID_HEADER in response.headers
        deadline = time.monotonic() + 10  # the worker writes its log asynchronously
        while not (lines := access_lines(server.log())) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(lines) == 1 and "status=200" in lines[0], server.log()[-2000:]


def test_the_supervising_process_imports_no_model_library():
    """`bentoml serve` imports service.py in its supervisor too: XGBoost and scikit-learn would cost it ~90 MiB."""
    import subprocess
    import sys

    from tests.utils.servers import PROJECT_ROOT

    probe = "import sys, service; print(sorted(m for m in ('xgboost', 'sklearn', 'scipy') if m in sys.modules))"
    output = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert output.returncode == 0, output.stderr
    assert output.stdout.strip() == "[]"


def test_a_skills_only_worker_imports_neither_the_text_stack_nor_the_text_models(trained_versions, tmp_path):
    """What `python -m loadtests.worker_start` measures per family: a worker serving skills alone leaves
    scikit-learn's text stack unimported and no text model loaded; one serving the text pair imports no XGBoost
    and no ONNX Runtime."""
    import json
    import os
    import subprocess
    import sys

    from tests.utils.servers import PROJECT_ROOT

    def child(families: str) -> dict:
        env = {**os.environ, "INFERENCE_FAMILIES": families, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
        run = subprocess.run(
            [sys.executable, "-m", "loadtests.worker_start", "--child"],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        return json.loads(run.stdout.strip().splitlines()[-1])

    skills = child('["skills"]')
    assert skills["text_stack"] is False and "onnxruntime" in skills["modules"], skills
    textpair = child('["textpair"]')
    assert textpair["text_stack"] is True, textpair  # the comparison above is not vacuous
    assert "xgboost" not in textpair["modules"] and "onnxruntime" not in textpair["modules"], textpair
