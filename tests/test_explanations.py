"""Per-prediction explanations: TreeSHAP contributions from XGBoost (`pred_contribs`), top 5 by magnitude with the
bias and the rest, so that bias + contributions + rest reproduces the model's margin; off by default, batched,
cached apart from unexplained answers."""

from __future__ import annotations

import asyncio
import math

import httpx
import numpy as np
import pytest

from inference.families import get_family
from inference.families.skills.scorer import TOP_CONTRIBUTIONS, SkillsScorer
from inference.schemas import SkillInferenceRequest
from inference.serving.cache import MemoryCache
from inference.serving.loader import FamilyLoader, load_families
from inference.serving.pipeline import Serving
from inference.settings import Settings
from tests.utils.docs import run_python_example
from tests.utils.requests import student_items
from tests.utils.serving import infer


@pytest.fixture(scope="module")
def scorer(stable_models):
    scorer = SkillsScorer(stable_models)
    yield scorer
    scorer.close()


def score_one(scorer, request):
    (result,) = asyncio.run(scorer.score_many([request]))
    return result


def check_explained(result, model, features):
    explanation = result.explanation
    assert explanation is not None
    total = explanation.bias + sum(item.contribution for item in explanation.contributions) + explanation.rest
    assert abs(total - explanation.margin) < 1e-5
    assert abs(1 / (1 + math.exp(-explanation.margin)) - result.score) < 1e-6
    magnitudes = [abs(item.contribution) for item in explanation.contributions]
    assert magnitudes == sorted(magnitudes, reverse=True) and len(magnitudes) == min(
        TOP_CONTRIBUTIONS, len(model.feature_names)
    )
    for item in explanation.contributions:
        index = model.feature_names.index(item.feature)
        expected = features.get(item.feature, model.imputation_defaults[index])
        assert item.value == pytest.approx(float(expected))


def test_contributions_reproduce_the_margin_of_every_skill_and_leave_the_score_alone(scorer, stable_models):
    items = student_items(140, seed=91)
    for index, item in enumerate(items):
        if index % 3 == 0:  # some of the model's features left out: imputed values are explained too
            kept = stable_models[item["skill"]].feature_names[:2]
            item["features"] = {name: item["features"][name] for name in kept if name in item["features"]}
    for item in items:
        plain = score_one(scorer, SkillInferenceRequest(**item))
        explained = score_one(scorer, SkillInferenceRequest(**item, explain=True))
        assert plain.explanation is None
        assert explained.score == plain.score
        check_explained(explained, stable_models[item["skill"]], item["features"])


def test_the_contributions_are_xgboosts_treeshap_on_the_scaled_row(scorer, stable_models):
    import xgboost as xgb

    item = student_items(1, seed=92, skills=("leadership",))[0]
    result = score_one(scorer, SkillInferenceRequest(**item, explain=True))
    model = stable_models["leadership"]
    row = np.array([[item["features"].get(name, np.nan) for name in model.feature_names]])
    row = np.where(np.isnan(row), model.imputation_defaults, row)
    scaled = ((row - model.mean) / model.scale).astype(np.float32)
    reference = model.booster.predict(
        xgb.DMatrix(scaled, feature_names=model.booster.feature_names), pred_contribs=True
    )[0]
    assert result.explanation.bias == pytest.approx(float(reference[-1]), abs=1e-6)
    for contribution in result.explanation.contributions:
        assert contribution.contribution == pytest.approx(
            float(reference[model.feature_names.index(contribution.feature)]), abs=1e-6
        )


def test_a_batch_explains_every_item_or_only_those_that_ask(scorer, stable_models):
    items = [SkillInferenceRequest(**item) for item in student_items(30, seed=93)]
    explained = [item.model_copy(update={"explain": True}) for item in items]
    everything = asyncio.run(scorer.score_many(explained))
    for item, result in zip(items, everything, strict=True):
        check_explained(result, stable_models[item.skill], item.features)
    asking = [item.model_copy(update={"explain": index % 2 == 0}) for index, item in enumerate(items)]
    some = asyncio.run(scorer.score_many(asking))
    assert [result.explanation is not None for result in some] == [index % 2 == 0 for index in range(30)]


def test_an_explained_answer_in_the_cache_is_never_given_to_a_request_without_explain(trained_versions):
    settings = Settings(skills_version="v1.0.0", families=["skills"])
    families = load_families(settings, FamilyLoader(settings, get_family))
    assert families.ready(), families.errors
    serving = Serving(families, MemoryCache(ttl_s=600))
    item = student_items(1, seed=96, skills=("communication",))[0]

    def ask(**extra):
        request = SkillInferenceRequest(**item, **extra)
        return infer(serving, request)

    try:
        explained = ask(explain=True)  # first: the cache now holds an explained answer for this input
        plain = ask()
        plain_again = ask()
        explained_again = ask(explain=True)
    finally:
        families.close()
    assert explained.explanation is not None and not explained.cached
    assert plain.explanation is None and not plain.cached  # its own key: a miss, scored without explanation
    assert plain_again.explanation is None and plain_again.cached
    assert explained_again.explanation == explained.explanation and explained_again.cached
    assert plain.score == explained.score


@pytest.mark.server
def test_over_http_an_explanation_is_asked_for_cached_apart_and_reproduces_the_margin(server):
    item = student_items(1, seed=94, skills=("creativity",))[0]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        plain = http.post("/api/v1/skills/infer", json=item).json()
        first = http.post("/api/v1/skills/infer", json={**item, "explain": True}).json()
        again = http.post("/api/v1/skills/infer", json={**item, "explain": True}).json()
        batch = http.post("/api/v1/skills/infer/batch", json={"items": [item, item], "explain": True}).json()
    assert "explanation" not in plain  # absent, not null, unless asked for
    assert first["explanation"] is not None and not first["cached"]
    assert again["cached"] and again["explanation"] == first["explanation"]
    assert first["score"] == plain["score"]
    explanation = first["explanation"]
    total = explanation["bias"] + sum(c["contribution"] for c in explanation["contributions"]) + explanation["rest"]
    assert abs(total - explanation["margin"]) < 1e-5
    assert all(result["explanation"] == explanation for result in batch["results"])


@pytest.mark.server
def test_the_python_client_asks_for_an_explanation(server):
    from inference.client import InferenceClient

    item = student_items(1, seed=95, skills=("leadership",))[0]
    with InferenceClient(server.url) as client:
        result = client.infer_skill(item["student_id"], item["skill"], item["features"], explain=True)
        plain = client.infer_skill(item["student_id"], item["skill"], item["features"])
    assert result.explanation is not None and plain.explanation is None
    assert len(result.explanation.contributions) == TOP_CONTRIBUTIONS


@pytest.mark.server
def test_the_doc_example_runs_and_its_sum_equals_the_margin(server):
    import re

    lines = run_python_example("explanations.md", server.url)
    assert re.fullmatch(r"score \d\.\d{3}, margin [+-]\d+\.\d{3}, bias [+-]\d+\.\d{3}", lines[0])
    assert len(lines) == 1 + TOP_CONTRIBUTIONS + 2
    assert abs(float(lines[-1].rsplit("=", 1)[1])) < 1e-5


def test_the_cost_benchmark_runs(trained_versions, capsys):
    from loadtests.explain_bench import main

    assert main(["--version", "v1.0.0", "--repeat", "100"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("| single", "| batch"))]
    assert len(rows) == 2 and all(float(row.split("|")[4].strip().rstrip("x")) > 0 for row in rows)
