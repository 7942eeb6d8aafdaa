"""A fourth family from one folder and its registration (tests/plugins/toxicity/), with no other file edited:
imported by import_models.py, served by `bentoml serve` over the JSON API and the Open Inference Protocol, with
version routing (sticky per user, forced by header), the result cache, the request metrics and a shadow version."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from tests.plugins.toxicity.spec import BATCH_ROUTE, SCORE_ROUTE
from tests.utils.prometheus import metric_total
from tests.utils.servers import PROJECT_ROOT, start_server

PLUGIN = "tests.plugins.toxicity.spec:SPEC"
WEIGHTS = {
    "v1.0.0": {"bias": -2.0, "words": {"awful": 3.0, "idiot": 4.0, "stupid": 3.0}},
    "v1.1.0": {"bias": -1.0, "words": {"awful": 2.0, "idiot": 4.0, "hate": 3.0}},
}


@pytest.fixture(scope="module")
def plugin_server(session_dir):
    env = {**dict(__import__("os").environ), "INFERENCE_FAMILY_PLUGINS": json.dumps([PLUGIN])}
    for version, weights in WEIGHTS.items():
        folder = session_dir / "toxicity" / version
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "weights.json").write_text(json.dumps(weights))
        imported = subprocess.run(
            [sys.executable, "import_models.py", str(folder), "--family", "toxicity"],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        assert imported.returncode == 0 or "already" in imported.stderr, imported.stderr
    served = {
        "INFERENCE_FAMILY_PLUGINS": json.dumps([PLUGIN]),
        "INFERENCE_FAMILIES": json.dumps(["toxicity"]),
        "INFERENCE_MODEL_VERSIONS": json.dumps({"toxicity": "v1.0.0"}),
        "INFERENCE_ROUTES": json.dumps({"toxicity": {"v1.0.0": 50, "v1.1.0": 50}}),
        "INFERENCE_SHADOW": json.dumps({"toxicity": "v1.1.0"}),
        "INFERENCE_SHADOW_SHARE": "1.0",
        "INFERENCE_WORKERS": "1",
    }
    with start_server(session_dir / "logs-plugin", env=served) as server:
        yield server


def test_the_json_routes_answer_with_sticky_versions_a_forced_one_and_the_cache(plugin_server):
    url = plugin_server.url
    versions = set()
    for user in range(40):
        first = httpx.post(url + SCORE_ROUTE, json={"text": "you awful idiot", "user_id": f"user-{user}"})
        assert first.status_code == 200, first.text
        again = httpx.post(url + SCORE_ROUTE, json={"text": "you awful idiot", "user_id": f"user-{user}"}).json()
        assert again["model_version"] == first.json()["model_version"]  # sticky per user
        versions.add(first.json()["model_version"])
    assert versions == {"v1.0.0", "v1.1.0"}  # a 50/50 split over 40 users reaches both
    forced = httpx.post(url + SCORE_ROUTE, json={"text": "hate"}, headers={"X-Model-Version": "v1.1.0"}).json()
    assert forced["model_version"] == "v1.1.0" and forced["toxic"] is True  # sigmoid(-1 + 3) > 0.5
    cached = httpx.post(url + SCORE_ROUTE, json={"text": "hate"}, headers={"X-Model-Version": "v1.1.0"}).json()
    assert cached["cached"] is True and cached["probability"] == forced["probability"]
    assert metric_total(url, "inference_cache_requests_total", family="toxicity", outcome="hit") >= 1


def test_a_batch_answers_in_order_with_a_bad_text_in_its_place_and_bad_bodies_get_a_400(plugin_server):
    url = plugin_server.url
    answer = httpx.post(url + BATCH_ROUTE, json={"texts": ["hello", "   ", "stupid idiot"], "user_id": "u"}).json()
    assert (answer["succeeded"], answer["failed"]) == (2, 1)
    assert answer["results"][1] == {
        "index": 1,
        "error": {"code": "invalid_request", "message": "text: 1 to 2000 characters, not blank"},
    }
    assert answer["results"][0]["toxic"] is False and answer["results"][2]["toxic"] is True
    missing = httpx.post(url + SCORE_ROUTE, json={"txt": "hello"})
    assert missing.status_code == 400
    assert missing.json() == {"error": "text: Field required", "code": "invalid_request"}
    too_many = httpx.post(url + BATCH_ROUTE, json={"texts": ["a"] * 1001})
    assert too_many.status_code == 400 and too_many.json()["code"] == "batch_too_large"
    assert too_many.json()["error"].startswith("texts: at most 1000 texts per request")
    unknown = httpx.post(url + SCORE_ROUTE, json={"text": "hi"}, headers={"X-Model-Version": "v9.0.0"})
    assert unknown.status_code == 400 and unknown.json()["code"] == "invalid_header"


def test_the_open_inference_protocol_serves_the_family_through_the_same_path(plugin_server):
    url = plugin_server.url
    metadata = httpx.get(url + "/v2/models/toxicity").json()
    assert metadata["versions"] == ["v1.0.0", "v1.1.0"]
    assert [tensor["name"] for tensor in metadata["outputs"]] == ["toxic", "probability"]
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["awful idiot", "nice day"]}]}
    answer = httpx.post(url + "/v2/models/toxicity/versions/v1.0.0/infer", json=body)
    assert answer.status_code == 200, answer.text
    outputs = {tensor["name"]: tensor["data"] for tensor in answer.json()["outputs"]}
    assert outputs["toxic"] == [1, 0]
    json_answer = httpx.post(url + SCORE_ROUTE, json={"text": "awful idiot"}, headers={"X-Model-Version": "v1.0.0"})
    assert outputs["probability"][0] == pytest.approx(json_answer.json()["probability"])  # one path, one answer
    assert metric_total(url, "inference_requests_total", family="toxicity", endpoint="oip") >= 1


def test_the_request_metrics_and_the_shadow_count_the_family(plugin_server):
    url = plugin_server.url
    for index in range(5):
        assert httpx.post(url + SCORE_ROUTE, json={"text": f"stupid {index}"}, headers={"X-Model-Version": "v1.0.0"})
    assert metric_total(url, "inference_requests_total", family="toxicity", endpoint="single") >= 5
    assert metric_total(url, "inference_http_requests_total", route=SCORE_ROUTE) >= 5
    # Every answer of v1.0.0 is scored again by the shadow v1.1.0 after it is sent.
    compared = metric_total(
        url, "inference_shadow_comparisons_total", family="toxicity", model_version="v1.0.0", shadow_version="v1.1.0"
    )
    assert compared >= 5
    models = httpx.get(url + "/api/v1/models").json()
    assert [entry["family"] for entry in models["families"]] == ["toxicity"]


def test_the_openapi_document_describes_the_familys_routes(plugin_server):
    document = httpx.get(plugin_server.url + "/docs.json").json()
    single = document["paths"][SCORE_ROUTE]["post"]
    assert single["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/ToxicityRequest")
    assert single["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/ToxicityResult")
    assert "ToxicityBatchResponse" in document["components"]["schemas"]
    assert "X-Model-Version" in [parameter["name"] for parameter in single["parameters"]]
