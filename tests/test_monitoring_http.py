"""Monitoring over HTTP against a real server: /metrics values add up across workers, drift shows a shifted
population, teacher ratings correlate with a real model and not with a broken one, and bad ratings get a 400."""

import json
import re
import time
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from inference.families.skills.family import import_skill_artifacts
from inference.families.skills.scoring import skill_model_name
from inference.storage import engine_for, teacher_ratings
from tests.utils.clock import iso_ago, iso_ahead
from tests.utils.needs import unavailable
from tests.utils.prometheus import metric_total
from tests.utils.requests import RATINGS_AUTH, delete_from_store
from tests.utils.servers import start_server
from train.data.catalogue import SKILLS
from train.data.students import generate_students
from train.skills import SkillTrainingParams, train_skills

pytestmark = pytest.mark.server

BROKEN = "v0.9.0-broken"
SKILL = "leadership"
RATINGS = "/api/v1/monitoring/ratings"
ADMIN_TOKEN = "monitoring-admin-token-0123456789"


@pytest.fixture(scope="module")
def database_url(session_dir):
    return f"sqlite:///{session_dir / 'monitoring.db'}"


@pytest.fixture(scope="module")
def monitored(trained_versions, session_dir, database_url):
    artifacts = session_dir / "artifacts" / "skills" / BROKEN
    train_skills(BROKEN, SkillTrainingParams(n_students=3000, n_estimators=40, shuffle_labels=True), artifacts)
    import_skill_artifacts(artifacts, version=BROKEN)
    env = {
        "INFERENCE_SKILLS_VERSION": "v1.0.0",
        "INFERENCE_FAMILIES": '["skills"]',
        "INFERENCE_ROUTES": json.dumps({"skills": {"v1.0.0": 100, BROKEN: 0}}),  # loaded, reached by header only
        "DATABASE_URL": database_url,
        "CACHE_URL": "none://",
        "INFERENCE_DRIFT_MIN_OBSERVATIONS": "200",
        "INFERENCE_ADMIN_TOKEN": ADMIN_TOKEN,  # on, to show it is not a ratings writer's token
    }
    try:
        with start_server(session_dir / "logs-monitoring", env=env) as server:
            yield server
    finally:
        delete_from_store([skill_model_name(skill) for skill in SKILLS], BROKEN)


def post(url, path, body, **headers):
    return httpx.post(url + path, json=body, headers={"Connection": "close", **headers}, timeout=30)


def items_for(sample, skill):
    return [
        {"student_id": student_id, "skill": skill, "features": features}
        for student_id, features in zip(sample.student_ids, sample.feature_dicts(), strict=True)
    ]


def test_request_metrics_add_up_across_workers(monitored):
    url = monitored.url
    before_ok = metric_total(url, "inference_requests_total", family="skills", outcome="ok")
    before_count = metric_total(url, "inference_request_duration_seconds_count", family="skills")
    before_scores = metric_total(url, "inference_prediction_score_count", family="skills")
    before_errors = metric_total(url, "inference_errors_total", family="skills", code="unknown_skill")
    before_batches = metric_total(url, "inference_batch_size_count", family="skills")
    count = "inference_request_duration_seconds_count"
    before_single = metric_total(url, count, family="skills", endpoint="single", segment=SKILL)
    before_batch = metric_total(url, count, family="skills", endpoint="batch", segment="creativity")
    before_unknown = metric_total(url, "inference_requests_total", endpoint="single", segment="unknown")
    for item in items_for(generate_students(30, seed=701), SKILL):
        assert post(url, "/api/v1/skills/infer", item).status_code == 200
    batch = post(url, "/api/v1/skills/infer/batch", {"items": items_for(generate_students(20, seed=702), "creativity")})
    assert batch.status_code == 200
    for _ in range(4):
        assert (
            post(url, "/api/v1/skills/infer", {"student_id": "s", "skill": "cooking", "features": {"x": 1}}).status_code
            == 400
        )
    assert metric_total(url, "inference_requests_total", family="skills", outcome="ok") - before_ok == 31
    assert metric_total(url, "inference_requests_total", family="skills", outcome="client_error") >= 4
    assert metric_total(url, "inference_request_duration_seconds_count", family="skills") - before_count == 35
    assert metric_total(url, "inference_prediction_score_count", family="skills") - before_scores == 50
    assert metric_total(url, "inference_errors_total", family="skills", code="unknown_skill") - before_errors == 4
    assert metric_total(url, "inference_batch_size_count", family="skills") - before_batches >= 2
    # Per endpoint and segment: what the latency objectives read (a batch of one skill is that skill's segment).
    assert metric_total(url, count, family="skills", endpoint="single", segment=SKILL) - before_single == 30
    assert metric_total(url, count, family="skills", endpoint="batch", segment="creativity") - before_batch == 1
    # An unknown skill is counted under "unknown": a caller's text never becomes a label value.
    assert metric_total(url, "inference_requests_total", endpoint="single", segment="unknown") - before_unknown == 4
    assert 'segment="cooking"' not in httpx.get(url + "/metrics").text
    text = httpx.get(url + "/metrics").text
    assert re.search(r'inference_route_weight\{family="skills",model_version="v1\.0\.0",role="stable"\} 1\.0', text)
    assert "student-" not in text  # never a student id in a label


def drift_once_every_model_has_statistics(url, populations, *, timeout_s=60):
    """Send each population in batches of 30, then ask for drift until the answer has statistics for every model.

    Drift is the server's: the workers share their windows every 2 s, and either answers from all of them."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=url, timeout=30) as client:
        for items in populations.values():
            for start in range(0, len(items), 30):
                batch = client.post("/api/v1/skills/infer/batch", json={"items": items[start : start + 30]})
                assert batch.status_code == 200, batch.text
        while True:
            reports = {entry["model"]: entry for entry in client.get("/api/v1/monitoring/drift").json()["models"]}
            if all(feature in reports.get(model, {}).get("psi", {}) for model, feature in populations):
                return reports
            assert time.monotonic() < deadline, reports
            time.sleep(0.5)


def test_drift_shows_a_shifted_population_and_not_an_ordinary_one(monitored):
    url = monitored.url
    # 900 students per skill: well over the 200 observations drift needs (PSI reads about 9/n on an unshifted
    # sample of n), keyed by the model and the feature whose statistics the assertions read.
    shifted = generate_students(900, seed=703, feature_shift={"words_per_response": 1.5})
    populations = {
        ("skill-communication", "words_per_response"): items_for(shifted, "communication"),
        ("skill-creativity", "score"): items_for(generate_students(900, seed=704), "creativity"),
    }
    reports = drift_once_every_model_has_statistics(url, populations)
    shifted, ordinary = reports["skill-communication"], reports["skill-creativity"]
    assert shifted["psi"]["words_per_response"] > 0.2 and shifted["alert"] is True
    assert max(ordinary["psi"].values()) < 0.2 and ordinary["alert"] is False
    assert metric_total(url, "inference_drift_psi", model="skill-communication", feature="words_per_response") > 0.2


@pytest.mark.clock
def test_ratings_correlate_with_the_real_model_and_alert_on_the_broken_one(monitored):
    url = monitored.url
    sample = generate_students(120, seed=705)
    for item in items_for(sample, SKILL):
        assert post(url, "/api/v1/skills/infer", item).json()["model_version"] == "v1.0.0"
        assert post(url, "/api/v1/skills/infer", item, **{"X-Model-Variant": BROKEN}).json()["model_version"] == BROKEN
    ratings = [
        {"student_id": student_id, "skill": SKILL, "rating": float(rating), "rated_at": iso_ago(days=1)}
        for student_id, rating in zip(sample.student_ids, sample.ratings[:, SKILLS.index(SKILL)], strict=True)
    ]
    stored = post(url, RATINGS, {"ratings": ratings}, **RATINGS_AUTH)
    assert stored.status_code == 200 and stored.json()["stored"] == 120

    def correlations() -> dict[str, dict]:
        answer = httpx.get(url + "/api/v1/monitoring/correlation").json()["correlations"]
        return {entry["model_version"]: entry for entry in answer if entry["skill"] == SKILL}

    # The prediction log reaches the database once a second, off the request path, and the correlations are
    # computed every 15 s: wait for a round after all 240 scores.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = correlations()
        if all(found.get(version, {}).get("pairs") == 120 for version in ("v1.0.0", BROKEN)):
            break
        time.sleep(0.2)
    assert found["v1.0.0"]["pairs"] == 120 and found["v1.0.0"]["pearson_r"] > 0.5 and not found["v1.0.0"]["alert"]
    assert found[BROKEN]["pearson_r"] < 0.5 and found[BROKEN]["alert"] is True
    assert metric_total(url, "inference_rating_correlation", model=f"skill-{SKILL}", model_version="v1.0.0") > 0.5


def ratings_stored(database_url, student_id):
    with engine_for(database_url).connect() as connection:
        count = select(func.count()).where(teacher_ratings.c.student_id == student_id)
        return connection.execute(count).scalar_one()


@pytest.mark.clock
@pytest.mark.parametrize(
    ("rating", "fragment"),
    [
        ({"student_id": "s", "skill": "cooking", "rating": 3, "rated_at": iso_ago(days=10)}, "ratings[1].skill"),
        ({"student_id": "s", "skill": SKILL, "rating": 7, "rated_at": iso_ago(days=10)}, "ratings[1].rating"),
        ({"student_id": "s", "skill": SKILL, "rating": 3, "rated_at": "yesterday"}, "ratings[1].rated_at"),
        ({"student_id": "s", "skill": SKILL, "rating": 3, "rated_at": iso_ahead(days=1)}, "is in the future"),
        ({"skill": SKILL, "rating": 3, "rated_at": iso_ago(days=10)}, "ratings[1].student_id"),
    ],
)
def test_bad_ratings_get_a_400_naming_the_field_and_nothing_is_stored(monitored, database_url, rating, fragment):
    student_id = f"s-{uuid.uuid4().hex[:12]}"
    good = {"student_id": student_id, "skill": SKILL, "rating": 3, "rated_at": iso_ago(days=10)}
    response = post(monitored.url, RATINGS, {"ratings": [good, rating]}, **RATINGS_AUTH)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]
    assert ratings_stored(database_url, student_id) == 0  # not even the good rating before the bad one
    assert post(monitored.url, RATINGS, {"ratings": [good]}, **RATINGS_AUTH).status_code == 200
    assert ratings_stored(database_url, student_id) == 1  # what the count above would have seen


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", "Bearer " + ADMIN_TOKEN, RATINGS_AUTH["Authorization"].removeprefix("Bearer ")],
    ids=["none", "wrong", "the admin token", "no Bearer"],
)
def test_ratings_need_a_writers_token_and_nothing_else_will_do(monitored, database_url, authorization):
    rating = {"student_id": f"s-auth-{len(authorization or '')}", "skill": SKILL, "rating": 4}
    rating["rated_at"] = iso_ago(days=1)
    headers = {"Authorization": authorization} if authorization else {}
    response = post(monitored.url, RATINGS, {"ratings": [rating]}, **headers)
    assert response.status_code == 401 and response.json()["code"] == "unauthorized", response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert ratings_stored(database_url, rating["student_id"]) == 0
    # The writer's token opens nothing else: the admin API refuses it.
    assert httpx.get(monitored.url + "/admin/routes", headers=RATINGS_AUTH).status_code == 401


def chromium_binary():
    import shutil

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        unavailable("chromium is not installed (apt-get install chromium)")
    return binary


def test_the_dashboard_renders_plots_in_a_real_browser(monitored, tmp_path):
    import subprocess

    from PIL import Image

    url = monitored.url
    for item in items_for(generate_students(120, seed=706), "problem_solving"):
        post(url, "/api/v1/skills/infer", item)
    deadline = time.monotonic() + 30
    while "skill-problem_solving" not in (html := httpx.get(url + "/dashboard").text):  # the workers share every 2 s
        assert time.monotonic() < deadline, html
        time.sleep(0.5)
    assert html.count('<svg class="plot"') >= 1
    assert "Latency of successful requests" in html and "Result cache" in html
    screenshot = tmp_path / "dashboard.png"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--hide-scrollbars",
        "--window-size=1400,1800",
        f"--screenshot={screenshot}",
    ]
    run = subprocess.run([chromium_binary(), *flags, url + "/dashboard"], capture_output=True, text=True, timeout=120)
    assert screenshot.is_file(), run.stderr[-2000:]
    pixels = Image.open(screenshot).convert("RGB").get_flattened_data()
    blue = sum(1 for pixel in pixels if pixel == (0x2F, 0x6F, 0xDF))  # the live-score bars
    grey = sum(1 for pixel in pixels if pixel == (0x9A, 0xA5, 0xB1))  # the reference bars
    assert blue > 500 and grey > 500, (blue, grey)
