"""Property-based fuzzing of the HTTP API from its own OpenAPI document (schemathesis), against a real server:
whatever a client sends, valid or not, the service answers without a 5xx, with a documented status code and
content type, and with a body that matches the document's schema for that status.

INFERENCE_FUZZ_EXAMPLES sets the examples per endpoint and phase (default 60; a longer local run: more).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest

pytestmark = [pytest.mark.server, pytest.mark.slow]

EXAMPLES = int(os.environ.get("INFERENCE_FUZZ_EXAMPLES", "60"))
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
SCORING_ROUTES = {
    "/api/v1/skills/infer",
    "/api/v1/skills/infer/batch",
    "/api/classify",
    "/api/classify/batch",
    "/api/v2/classify/ensemble",
    "/predict",
    "/api/v1/monitoring/ratings",
}


def test_every_scoring_route_is_in_the_document_the_fuzzer_reads(server):
    paths = set(httpx.get(server.url + "/docs.json").json()["paths"])
    assert paths >= SCORING_ROUTES


def test_no_request_gets_a_5xx_or_an_answer_off_the_documented_schema(server, tmp_path: Path):
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        server.url + "/docs.json",
        # The scoring routes: the document also holds the admin API (which would change the shared server's
        # routes), the reads and the Open Inference Protocol (tests/test_oip.py, tests/test_openapi_client.py).
        "--include-path-regex",
        "^(" + "|".join(re.escape(route) for route in sorted(SCORING_ROUTES)) + ")$",
        "--checks",
        CHECKS,
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        "20261124",
        "--header",  # a ratings writer's token: without it every ratings case would stop at the 401
        "Authorization: Bearer test-ratings-token-0123456789abcdef",
        "--request-timeout",
        "30",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    print(run.stdout[-3000:])
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    summary = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert summary, run.stdout[-3000:]
    generated, passed = map(int, summary.groups())
    assert generated == passed >= EXAMPLES * len(SCORING_ROUTES)  # every case ran and passed
    (report,) = tmp_path.glob("junit-*.xml")
    cases = ElementTree.parse(report).getroot().iter("testcase")
    tested = {case.get("name") for case in cases if not list(case)}  # no failure, error or skip inside
    assert {f"POST {route}" for route in SCORING_ROUTES} <= tested


def test_the_api_doc_lists_every_operation_of_the_live_document_and_every_other_route(server):
    from tools.docs import API_DOC

    document = API_DOC.read_text()
    for path, operations in httpx.get(server.url + "/docs.json").json()["paths"].items():
        for method in operations:
            assert f"### `{method.upper()} {path}`" in document, (method, path)
    for path in ("/api/v1/models", "/health", "/admin/routes", "/api/v1/monitoring/drift", "/dashboard", "/v2"):
        assert httpx.get(server.url + path).status_code != 404
        assert f"### `GET {path}`" in document
