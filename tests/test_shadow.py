"""Shadow traffic: a configured version scores a sampled copy of the requests after the answer is sent; agreement
with the version that answered (mean absolute score difference, same label) per version pair, in metrics and on
the dashboard, right for two known models; the answers themselves are the primary's, unchanged."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import numpy as np
import pytest

from inference.errors import UnknownSkill
from inference.families import get_family
from inference.families.intent.scorer import IntentQuery
from inference.families.skills.family import load_skill_models
from inference.families.skills.scorer import HIGH_SKILL, SkillsScorer
from inference.monitoring.metrics import NoMetrics
from inference.schemas import SkillInferenceRequest
from inference.serving.pipeline import Outcome
from inference.serving.shadow import Shadow, load_shadows
from inference.settings import Settings
from tests.utils.docs import run_python_example
from tests.utils.prometheus import metric_total
from tests.utils.requests import student_items
from tests.utils.servers import start_server
from train.data.catalogue import SKILLS

PAIR = {"family": "skills", "model_version": "v1.0.0", "shadow_version": "v1.1.0"}


def outcome(requests, answers, family="skills"):
    return Outcome(list(requests), list(answers), ["v1.0.0"], get_family(family))


def expected_agreement(items, primary_scores):
    """Mean |difference| and share of equal labels, computed afresh with v1.1.0 in-process."""
    candidate = SkillsScorer(load_skill_models(dict.fromkeys(SKILLS, "v1.1.0")))
    try:
        requests = [SkillInferenceRequest(**item) for item in items]
        shadow = asyncio.run(candidate.score_many(requests))
    finally:
        candidate.close()
    first, second = np.array(primary_scores), np.array([result.score for result in shadow])
    return float(np.abs(first - second).mean()), float(((first >= HIGH_SKILL) == (second >= HIGH_SKILL)).mean())


@pytest.fixture(scope="module")
def scorers(trained_versions):
    made = {
        version: SkillsScorer(load_skill_models(dict.fromkeys(SKILLS, version))) for version in ("v1.0.0", "v1.1.0")
    }
    yield made
    for scorer in made.values():
        scorer.close()


def test_the_shadow_compares_the_sampled_answers_and_records_the_agreement(scorers):
    items = student_items(60, seed=71)
    requests = [SkillInferenceRequest(**item) for item in items]
    answers = asyncio.run(scorers["v1.0.0"].score_many(requests))
    shadow = Shadow("skills", "v1.1.0", scorers["v1.1.0"], share=1.0)
    asyncio.run(shadow.task(outcome(requests, answers))())
    pair = shadow.pairs["v1.0.0"]
    mean_diff, agreement = expected_agreement(items, [answer.score for answer in answers])
    assert pair.compared == 60
    assert pair.mean_abs_diff == pytest.approx(mean_diff, abs=1e-9) and pair.mean_abs_diff > 0
    assert pair.agreement == pytest.approx(agreement)


def test_sampling_and_what_is_never_compared(scorers):
    request = SkillInferenceRequest(**student_items(1, seed=72)[0])
    (answer,) = asyncio.run(scorers["v1.0.0"].score_many([request]))
    answered = outcome([request], [answer])
    assert Shadow("skills", "v1.1.0", scorers["v1.1.0"], share=0.0).task(answered) is None
    assert Shadow("skills", "v1.1.0", scorers["v1.1.0"], share=0.3, sample=lambda: 0.5).task(answered) is None
    assert Shadow("skills", "v1.1.0", scorers["v1.1.0"], share=0.3, sample=lambda: 0.1).task(answered)
    own = answer.model_copy(update={"model_version": "v1.1.0"})  # the shadow version answered itself
    assert Shadow("skills", "v1.1.0", scorers["v1.1.0"], share=1.0).task(outcome([request], [own])) is None
    failed = outcome([request], [UnknownSkill("skill: unknown skill")])  # an error is never compared
    assert Shadow("skills", "v1.1.0", scorers["v1.1.0"], share=1.0).task(failed) is None


def test_a_failing_shadow_is_logged_and_never_raises(scorers, caplog):
    class Broken:
        measure = scorers["v1.1.0"].measure

        async def score_many(self, requests):
            raise RuntimeError("shadow model exploded")

    request = SkillInferenceRequest(**student_items(1, seed=73)[0])
    (answer,) = asyncio.run(scorers["v1.0.0"].score_many([request]))
    shadow = Shadow("skills", "v1.1.0", Broken(), share=1.0)  # type: ignore[arg-type]
    asyncio.run(shadow.task(outcome([request], [answer]))())
    assert "shadow skills v1.1.0 failed: RuntimeError: shadow model exploded" in caplog.text
    assert shadow.pairs == {}


@pytest.fixture(scope="module")
def text_scorers(text_reports):
    from inference.families import get_family
    from inference.serving.loader import FamilyLoader
    from inference.settings import Settings

    loader = FamilyLoader(Settings(families=["intent", "textpair"]), get_family)
    made = {family: loader.load(family, "v1.0.0") for family in ("intent", "textpair")}
    yield made
    for scorer in made.values():
        scorer.close()


def test_intent_and_text_pair_shadows_compare_labels_and_scores(text_scorers):
    # The same models under another version name: the comparison must find full agreement and no difference.
    from inference.schemas import TextPairRequest
    from train.data.pairs import generate_pairs
    from train.data.queries import generate_queries

    queries = [IntentQuery(text, variant="classic") for text in generate_queries(40, seed=75).texts]
    answers = asyncio.run(text_scorers["intent"].score_many(queries))
    intent = Shadow("intent", "v-same", text_scorers["intent"], share=1.0)
    asyncio.run(intent.task(outcome(queries, answers))())
    assert (intent.pairs["v1.0.0"].compared, intent.pairs["v1.0.0"].agreement) == (40, 1.0)
    assert intent.pairs["v1.0.0"].mean_abs_diff == pytest.approx(0.0, abs=1e-12)

    requests = [TextPairRequest(text1=first, text2=second) for first, second in generate_pairs(30, seed=76).pairs]
    answers = asyncio.run(text_scorers["textpair"].score_many(requests))
    pair = Shadow("textpair", "v-same", text_scorers["textpair"], share=1.0)
    asyncio.run(pair.task(outcome(requests, answers))())
    assert (pair.pairs["v1.0.0"].compared, pair.pairs["v1.0.0"].agreement) == (30, 1.0)

    flipped = [answer.model_copy(update={"prediction": 1 - answer.prediction}) for answer in answers]
    disagreeing = Shadow("textpair", "v-same", text_scorers["textpair"], share=1.0)
    asyncio.run(disagreeing.task(outcome(requests, flipped))())
    assert disagreeing.pairs["v1.0.0"].agreement == 0.0  # labels are compared, not only scores


@pytest.mark.server
@pytest.mark.slow
def test_a_shadow_that_cannot_load_or_whose_family_is_not_served_is_logged_and_skipped(trained_versions, caplog):
    settings = Settings(families=["skills"], shadow={"skills": "v9.9.9", "textpair": "v1.0.0"})
    with caplog.at_level(logging.ERROR, logger="inference"):
        assert load_shadows(settings, get_family, NoMetrics()) == {}
    logged = caplog.text
    assert "shadow version v9.9.9 of skills not loaded, serving without a shadow" in logged
    assert "shadow version v1.0.0 of textpair ignored: this server does not serve textpair" in logged


def test_over_http_the_answers_are_the_primarys_and_the_metrics_hold_the_right_agreement(trained_versions, session_dir):
    env = {
        "INFERENCE_FAMILIES": '["skills"]',
        "INFERENCE_SKILLS_VERSION": "v1.0.0",
        "INFERENCE_SHADOW": '{"skills": "v1.1.0"}',
        "INFERENCE_SHADOW_SHARE": "1",
        "CACHE_URL": "none://",
        "INFERENCE_WORKERS": "2",
    }
    items = student_items(80, seed=74)
    with (
        start_server(session_dir / "logs-shadow", env=env) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        singles = [http.post("/api/v1/skills/infer", json=item).json() for item in items[:40]]
        batch = http.post("/api/v1/skills/infer/batch", json={"items": items[40:]}).json()["results"]
        answers = singles + batch
        deadline = time.monotonic() + 30
        while (
            metric_total(server.url, "inference_shadow_comparisons_total", **PAIR) < 80 and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        compared = metric_total(server.url, "inference_shadow_comparisons_total", **PAIR)
        abs_diff = metric_total(server.url, "inference_shadow_abs_score_difference_total", **PAIR)
        agreed = metric_total(server.url, "inference_shadow_label_agreements_total", **PAIR)
        shadow_batches = metric_total(server.url, "inference_batch_size_count", model_version="v1.1.0")
        dashboard = http.get("/dashboard").text
        printed = run_python_example("shadow.md", server.url)
    assert {answer["model_version"] for answer in answers} == {"v1.0.0"}
    primary = SkillsScorer(load_skill_models(dict.fromkeys(SKILLS, "v1.0.0")))
    try:
        requests = [SkillInferenceRequest(**item) for item in items]
        expected_scores = [result.score for result in asyncio.run(primary.score_many(requests))]
    finally:
        primary.close()
    assert np.allclose([answer["score"] for answer in answers], expected_scores, atol=1e-9)  # unchanged by the shadow
    mean_diff, agreement = expected_agreement(items, expected_scores)
    assert compared == 80
    assert shadow_batches == 0  # the shadow's own batches are not counted as the service's
    assert abs_diff / compared == pytest.approx(mean_diff, abs=1e-6)
    assert agreed / compared == pytest.approx(agreement)
    assert "Shadow traffic: agreement with the version that answered" in dashboard
    assert printed == [
        f"skills v1.0.0 vs shadow v1.1.0: 80 compared, mean |difference| {abs_diff / compared:.4f}, "
        f"same label {agreed / compared:.1%}"
    ]


@pytest.mark.server
@pytest.mark.slow
def test_the_latency_benchmark_runs_both_servers(trained_versions, capsys):
    from loadtests.shadow_bench import main

    assert main(["--requests", "200"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("| no shadow", "| shadow"))]
    assert len(rows) == 2 and all(float(row.split("|")[2]) > 0 for row in rows)
