"""The intent and text-pair HTTP contracts, /health, /model_info and /api/v1/models, against real servers."""

from collections import Counter

import httpx
import pytest

from inference.families.textpair.features import PAIR_FEATURES
from tests.utils.servers import start_server
from train.data.queries import INTENTS, generate_queries

pytestmark = pytest.mark.server

CLASSIFY, BATCH, ENSEMBLE = "/api/classify", "/api/classify/batch", "/api/v2/classify/ensemble"
INTENT_FIELDS = {
    "intent",
    "confidence",
    "verticals",
    "variant",
    "model_version",
    "fallback",
    "cached",
    "fallback_reason",
}


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


@pytest.mark.parametrize("variant", ["classic", "ensemble"])
def test_classify_answers_the_documented_shape_from_the_requested_variant(client, variant):
    response = client.post(
        CLASSIFY, json={"text": "dentist near me and nursing jobs"}, headers={"X-Model-Preference": variant}
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert set(result) == INTENT_FIELDS
    assert result["intent"] == "local" and result["variant"] == variant and result["fallback"] is False
    assert result["fallback_reason"] is None
    assert result["model_version"] == "v1.0.0" and 0 < result["confidence"] <= 1
    assert {entry["vertical"] for entry in result["verticals"]} == {"health", "jobs"}


def test_the_ensemble_route_always_uses_the_ensemble(client):
    for text in ("buy running shoes", "chase login", "what is inflation"):
        result = client.post(ENSEMBLE, json={"text": text}).json()
        assert result["variant"] == "ensemble" and result["intent"] in INTENTS


def test_the_default_split_is_sticky_per_user_and_near_90_10_over_2000_ids(client):
    variants = {}
    for index in range(2000):
        answer = client.post(CLASSIFY, json={"text": "hotel in rome", "user_id": f"user-{index}"}).json()
        variants[index] = answer["variant"]
    share = Counter(variants.values())["ensemble"] / 2000
    assert share == pytest.approx(0.10, abs=0.025)
    for index in range(0, 2000, 97):  # the same user, the same variant, on any worker
        again = client.post(CLASSIFY, json={"text": "flights to rome", "user_id": f"user-{index}"}).json()
        assert again["variant"] == variants[index]


def test_a_batch_of_100_texts_is_answered_in_order(client):
    texts = generate_queries(100, seed=21).texts
    response = client.post(BATCH, json={"texts": texts}, headers={"X-Model-Preference": "classic"})
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["succeeded"] == 100 and payload["failed"] == 0
    singles = [
        client.post(CLASSIFY, json={"text": text}, headers={"X-Model-Preference": "classic"}).json()
        for text in texts[:10]
    ]
    assert [result["intent"] for result in payload["results"][:10]] == [single["intent"] for single in singles]
    assert payload["results"][3]["confidence"] == pytest.approx(singles[3]["confidence"], abs=1e-9)


@pytest.mark.parametrize(
    ("path", "body", "headers", "fragment", "code"),
    [
        (CLASSIFY, {"text": ""}, {}, "text: must not be empty", "invalid_text"),
        (CLASSIFY, {"text": "   "}, {}, "text: must not be empty", "invalid_text"),
        (CLASSIFY, {"text": "a" * 2001}, {}, "text: at most 2000 characters, got 2001", "invalid_text"),
        (CLASSIFY, {"text": 42}, {}, "text", "invalid_request"),
        (CLASSIFY, {}, {}, "text", "invalid_request"),
        (
            CLASSIFY,
            {"text": "ok"},
            {"X-Model-Preference": "turbo"},
            "X-Model-Preference: expected one of",
            "invalid_header",
        ),
        (BATCH, {"texts": []}, {}, "texts: must hold at least 1 text", "invalid_request"),
        (BATCH, {"texts": ["ok"] * 1001}, {}, "texts: at most 1000 texts per request, got 1001", "batch_too_large"),
        (BATCH, {"texts": "not a list"}, {}, "texts", "invalid_request"),
        ("/predict", {"text1": "a", "text2": ""}, {}, "text2: must not be empty", "invalid_text"),
        ("/predict", {"text1": "a"}, {}, "text2", "invalid_request"),
    ],
)
def test_bad_input_gets_a_400_naming_the_field(client, path, body, headers, fragment, code):
    response = client.post(path, json=body, headers=headers)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error", "code"}
    assert fragment in response.json()["error"] and response.json()["code"] == code, response.text


def test_predict_says_whether_two_texts_mean_the_same(client):
    same = client.post(
        "/predict",
        json={
            "text1": "the doctor fixed the broken car yesterday",
            "text2": "the physician repaired the damaged car the day before today",
        },
    )
    different = client.post(
        "/predict",
        json={
            "text1": "the doctor fixed the broken car yesterday",
            "text2": "our team built a faster computer in 2024",
        },
    )
    for response in (same, different):
        assert response.status_code == 200, response.text
        assert set(response.json()) == {"prediction", "label", "confidence", "model", "timestamp", "cached"}
        assert response.json()["model"] == {"name": "textpair", "version": "v1.0.0"}
        assert 0.5 <= response.json()["confidence"] <= 1
    assert (same.json()["prediction"], same.json()["label"]) == (1, "paraphrase")
    assert (different.json()["prediction"], different.json()["label"]) == (0, "different")


def test_model_info_describes_the_text_pair_model(client):
    info = client.get("/model_info").json()
    assert info["name"] == "textpair" and info["version"] == "v1.0.0" and info["feature_count"] == 30
    assert info["features"] == list(PAIR_FEATURES) and info["metrics"]["f1"] > 0.8 and info["trained_at"]
    assert "logistic regression" in info["type"]


def test_health_and_the_models_listing_name_every_family_and_served_version(client):
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok" and health.json()["timestamp"]
    families = {entry["family"]: entry for entry in client.get("/api/v1/models").json()["families"]}
    assert set(families) == {"skills", "intent", "textpair"}
    assert all(entry["loaded"] and entry["error"] is None for entry in families.values())
    assert len(families["skills"]["models"]) == 7
    assert {model["name"] for model in families["intent"]["models"]} == {
        "intent-classic",
        "intent-ensemble",
        "intent-verticals",
    }
    assert {model["version"] for entry in families.values() for model in entry["models"]} == {"v1.0.0"}
    assert health.json()["families"] == list(families.values())


def test_cors_is_off_by_default(client):
    response = client.options(
        CLASSIFY, headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in response.headers


def test_a_failing_ensemble_falls_back_to_classic_over_http_counted_in_metrics(
    text_reports, trained_versions, session_dir
):
    env = {
        "INFERENCE_INJECT_FAULTS": '{"intent-ensemble": "fail"}',
        "INFERENCE_CORS_ALLOWED_ORIGINS": '["https://app.example.com"]',
        "INFERENCE_FAMILIES": '["intent"]',
    }
    with start_server(session_dir / "logs-faults", env=env) as server, httpx.Client(base_url=server.url) as http:
        for _ in range(4):
            answer = http.post(ENSEMBLE, json={"text": "pharmacy near me"})
            assert answer.status_code == 200, answer.text
            assert answer.json()["variant"] == "classic" and answer.json()["fallback"] is True
            assert answer.json()["fallback_reason"] == "ensemble_error"
        assert (
            http.post(CLASSIFY, json={"text": "pharmacy near me"}, headers={"X-Model-Preference": "classic"}).json()[
                "fallback"
            ]
            is False
        )
        metrics = http.get("/metrics").text
        counted = [line for line in metrics.splitlines() if line.startswith("inference_fallbacks_total{")]
        assert any('reason="ensemble_error"' in line and line.endswith(" 4.0") for line in counted), counted
        assert "fault injection is on" in server.log()
        preflight = http.options(
            CLASSIFY, headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}
        )
        assert preflight.headers.get("access-control-allow-origin") == "https://app.example.com"
        answered = http.post(CLASSIFY, json={"text": "pharmacy"}, headers={"Origin": "https://app.example.com"})
        exposed = answered.headers.get("access-control-expose-headers", "").lower()
        assert "x-request-id" in exposed and "retry-after" in exposed  # a browser's code may read them
        # Only the intent family is loaded here: the others answer 503 naming the setting.
        skills = http.post(
            "/api/v1/skills/infer",
            json={"student_id": "s", "skill": "leadership", "features": {"leadership_roles_taken": 1}},
        )
        assert skills.status_code == 503 and "INFERENCE_FAMILIES" in skills.json()["error"]
        assert skills.json()["code"] == "models_not_ready"
