"""The HTTP contract, against a real `bentoml serve` process."""

import concurrent.futures

import httpx
import numpy as np
import pytest

from inference.families.skills.scoring import HIGH_SKILL_CLASS
from tests.test_scoring import stored_classifier_and_scaler
from tests.utils.requests import student_items
from train.data.catalogue import SKILL_FEATURES, SKILLS

pytestmark = pytest.mark.server

INFER = "/api/v1/skills/infer"
BATCH = "/api/v1/skills/infer/batch"
MODELS = "/api/v1/skills/models"


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def test_infer_answers_the_documented_shape(client):
    body = {
        "student_id": "s-1",
        "skill": "communication",
        "features": {"words_per_response": 140, "forum_posts_per_week": 6, "shoe_size": 44},
    }
    response = client.post(INFER, json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert set(result) == {
        "student_id",
        "skill",
        "score",
        "confidence",
        "feature_importance",
        "model_version",
        "imputed_features",
        "ignored_features",
        "cached",
    }
    assert result["student_id"] == "s-1" and result["skill"] == "communication"
    assert 0 <= result["score"] <= 1
    assert result["confidence"] == pytest.approx(abs(2 * result["score"] - 1))
    assert result["model_version"] == "v1.0.0"
    assert result["ignored_features"] == ["shoe_size"]
    assert set(result["imputed_features"]) == set(SKILL_FEATURES["communication"]) - {
        "words_per_response",
        "forum_posts_per_week",
    }
    importances = [item["importance"] for item in result["feature_importance"]]
    assert len(importances) == 5 and importances == sorted(importances, reverse=True)
    assert {item["feature"] for item in result["feature_importance"]} <= set(SKILL_FEATURES["communication"])


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (
            {"student_id": "s", "skill": "cooking", "features": {"x": 1}},
            400,
            "expected one of communication, collaboration, critical_thinking, creativity, problem_solving, self_regulation, leadership",
        ),
        ({"student_id": "s", "skill": "leadership", "features": {}}, 400, "features: must name at least one feature"),
        (
            {"student_id": "s", "skill": "leadership", "features": {"leadership_roles_taken": "many"}},
            400,
            "features.leadership_roles_taken: expected a number",
        ),
        (
            {"student_id": "s", "skill": "leadership", "features": {"leadership_roles_taken": -3}},
            400,
            "features.leadership_roles_taken: -3 is outside the valid range",
        ),
        (
            {"student_id": "s", "skill": "leadership", "features": {"shoe_size": 3}},
            400,
            "none of the 7 features of skill 'leadership'",
        ),
        ({"student_id": "s", "skill": "leadership"}, 400, "features"),
        ({"skill": "leadership", "features": {"leadership_roles_taken": 3}}, 400, "student_id"),
        ({"student_id": "s", "skill": "leadership", "features": [1, 2]}, 400, "features"),
    ],
)
def test_client_mistakes_get_a_400_naming_the_field(client, body, status, fragment):
    response = client.post(INFER, json=body)
    assert response.status_code == status, response.text
    assert fragment in response.text


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_json_literals_are_rejected_naming_the_feature(client, literal):
    raw = '{"student_id": "s", "skill": "creativity", "features": {"novel_idea_count": ' + literal + "}}"
    response = client.post(INFER, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_feature_value"
    assert "features.novel_idea_count: expected a finite number" in response.json()["error"]


def test_malformed_json_is_a_400_invalid_json_in_the_apis_error_shape(client):
    response = client.post(INFER, content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert set(response.json()) == {"error", "code"} and response.json()["code"] == "invalid_json"


def test_a_body_pydantic_refuses_gets_the_apis_error_shape_naming_the_field(client):
    body = {"student_id": "s", "skill": "leadership", "features": [1, 2]}
    response = client.post(INFER, json=body)
    assert response.status_code == 400
    assert response.json() == {"error": "features: Input should be an object", "code": "invalid_request"}


def test_http_scores_equal_predict_proba_of_the_stored_models(client, trained_versions):
    items = student_items(140, seed=77)
    results = client.post(BATCH, json={"items": items}).json()["results"]
    for skill in SKILLS:
        classifier, scaler = stored_classifier_and_scaler(trained_versions["v1.0.0"] / skill)
        rows, served = [], []
        for item, result in zip(items, results, strict=True):
            if item["skill"] != skill:
                continue
            names = SKILL_FEATURES[skill]
            if any(name not in item["features"] for name in names):
                continue  # rows with imputed values are compared in test_scoring; here only complete rows
            rows.append([item["features"][name] for name in names])
            served.append(result["score"])
        assert rows, skill
        expected = classifier.predict_proba(scaler.transform(np.array(rows)))[:, HIGH_SKILL_CLASS]
        np.testing.assert_allclose(served, expected, atol=1e-6)


def test_batch_scores_in_request_order_and_reports_bad_items_in_place(client):
    items = student_items(20)
    items[3] = {"student_id": "bad-skill", "skill": "juggling", "features": {"x": 1}}
    items[7] = {**items[7], "features": {}}
    items[11] = {**items[11], "features": {SKILL_FEATURES[items[11]["skill"]][0]: "NaN?"}}
    response = client.post(BATCH, json={"items": items})
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["succeeded"] == 17 and payload["failed"] == 3
    assert [result["student_id"] for result in payload["results"]] == [item["student_id"] for item in items]
    assert payload["results"][3]["error"]["code"] == "unknown_skill"
    assert payload["results"][7]["error"]["code"] == "empty_features"
    assert payload["results"][11]["error"]["code"] == "invalid_feature_value"
    single = client.post(INFER, json=items[0]).json()
    assert payload["results"][0]["score"] == pytest.approx(single["score"], abs=1e-12)


def test_a_batch_of_1000_students_is_scored(client):
    items = student_items(1000, seed=5)
    response = client.post(BATCH, json={"items": items})
    assert response.status_code == 200
    payload = response.json()
    assert payload["succeeded"] == 1000 and payload["failed"] == 0
    scores = np.array([result["score"] for result in payload["results"]])
    assert np.all((scores >= 0) & (scores <= 1))
    assert 0.1 < scores.mean() < 0.6  # about a third of generated students are rated high


@pytest.mark.parametrize(
    ("count", "fragment"), [(0, "at least 1 item"), (1001, "at most 1000 items per request, got 1001")]
)
def test_an_empty_or_oversize_batch_is_refused(client, count, fragment):
    items = student_items(1, seed=2) * count
    response = client.post(BATCH, json={"items": items})
    assert response.status_code == 400
    assert fragment in response.json()["error"]


def test_concurrent_requests_get_the_same_answers_as_sequential_ones(client, server):
    items = student_items(64, seed=31)
    sequential = [client.post(INFER, json=item).json()["score"] for item in items]
    with httpx.Client(base_url=server.url, timeout=30) as pooled, concurrent.futures.ThreadPoolExecutor(16) as pool:
        concurrent_scores = list(pool.map(lambda item: pooled.post(INFER, json=item).json()["score"], items))
    np.testing.assert_allclose(concurrent_scores, sequential, atol=1e-12)


def test_models_endpoint_lists_served_and_available_versions_with_metadata(client):
    response = client.get(MODELS)
    assert response.status_code == 200
    models = {entry["skill"]: entry for entry in response.json()["models"]}
    assert set(models) == set(SKILLS)
    for skill, entry in models.items():
        assert entry["served_version"] == "v1.0.0"
        assert entry["available_versions"] == ["v1.0.0", "v1.1.0"]
        assert entry["metrics"]["auc"] > 0.75 and entry["trained_at"]
        assert entry["feature_names"] == list(SKILL_FEATURES[skill])


def test_health_endpoints_answer(client):
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_the_openapi_document_describes_the_skills_routes(client):
    response = client.get("/docs.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert INFER in paths and BATCH in paths


def test_the_server_runs_one_worker_per_available_cpu_by_default(server):
    import psutil
    from bentoml._internal.resource import system_resources

    children = psutil.Process(server.process.pid).children(recursive=True)
    workers = [child for child in children if "_bentoml_impl.worker.service" in " ".join(child.cmdline())]
    assert len(workers) == max(1, int(system_resources()["cpu"]))
