"""A request's path in process: the version chosen, the cache consulted (keyed by version and input), misses
scored, degraded answers never cached, and a batch kept in order across hits, misses and versions."""

import pytest

from inference.families import get_family
from inference.faults import FaultInjector
from inference.monitoring.observer import Observer
from inference.schemas import SkillInferenceRequest
from inference.serving.cache import MemoryCache
from inference.serving.loader import FamilyLoader, load_families
from inference.serving.pipeline import Serving
from inference.settings import Settings
from tests.utils.requests import student_items
from tests.utils.serving import classify, infer, infer_batch, run


class CountingMetrics:
    def __init__(self):
        self.cache_calls = []

    def fallback(self, family, version, reason):
        pass

    def wanted(self, family, version, variant, count):
        pass

    def cache(self, family, version, outcome, count=1):
        if count:
            self.cache_calls.append((family, version, outcome, count))

    def request(self, family, version, outcome, seconds, endpoint="single", segment=""):
        pass

    def error(self, family, code):
        pass

    def limit(self, family, limit):
        pass

    def score(self, family, model, version, value):
        pass


@pytest.fixture(scope="module")
def serving(trained_versions, text_reports):
    settings = Settings(
        skills_version="v1.0.0",
        intent_version="v1.0.0",
        families=["skills", "intent"],
        routes={"skills": {"v1.0.0": 50, "v1.1.0": 50}},
    )
    families = load_families(settings, FamilyLoader(settings, get_family))
    assert families.ready(), families.errors
    metrics = CountingMetrics()
    yield Serving(families, MemoryCache(ttl_s=600), observer=Observer(metrics=metrics))
    families.close()


def test_a_repeated_request_is_answered_from_the_cache_and_says_so(serving):
    request = SkillInferenceRequest.model_validate(student_items(1, seed=901)[0])
    first = infer(serving, request, forced_version=None)
    again = infer(serving, request, forced_version=None)
    assert first.cached is False and again.cached is True
    assert again.model_dump(exclude={"cached"}) == first.model_dump(exclude={"cached"})
    assert ("skills", first.model_version, "hit", 1) in serving.observer.metrics.cache_calls


def test_new_features_or_another_version_never_meet_an_old_answer(serving):
    item = student_items(1, seed=902)[0]
    request = SkillInferenceRequest.model_validate(item)
    first = infer(serving, request, forced_version="v1.0.0")
    changed = dict(item["features"])
    name = next(iter(changed))
    changed[name] = changed[name] * 0.5 + 0.01
    moved = infer(serving, request.model_copy(update={"features": changed}), forced_version="v1.0.0")
    other_version = infer(serving, request, forced_version="v1.1.0")
    assert first.cached is False and moved.cached is False and other_version.cached is False
    assert other_version.model_version == "v1.1.0" and other_version.score != first.score


def test_students_are_split_between_versions_and_stay_on_theirs(serving):
    items = student_items(200, seed=903, skills=("leadership",))
    versions = {}
    for item in items:
        versions[item["student_id"]] = infer(serving, SkillInferenceRequest.model_validate(item)).model_version
    share = sum(version == "v1.1.0" for version in versions.values()) / len(versions)
    assert 0.35 < share < 0.65
    batch = infer_batch(serving, items[:50])
    assert [result.model_version for result in batch.results] == [versions[item["student_id"]] for item in items[:50]]
    assert all(result.cached for result in batch.results)


def test_a_batch_mixing_hits_misses_and_bad_items_keeps_its_order(serving):
    items = student_items(30, seed=904)
    infer_batch(serving, items[:10])
    items[20] = {"student_id": "bad", "skill": "juggling", "features": {"x": 1}}
    response = infer_batch(serving, items)
    assert [result.student_id for result in response.results] == [item["student_id"] for item in items]
    assert [getattr(result, "cached", None) for result in response.results[:12]] == [True] * 10 + [False] * 2
    assert response.results[20].error.code == "unknown_skill"
    assert (response.succeeded, response.failed) == (29, 1)


def test_intent_answers_are_cached_per_variant_and_fallbacks_never(serving):
    first = classify(serving, "cheap flights to rome", preference="classic")
    again = classify(serving, "cheap flights to rome", preference="classic")
    ensemble = classify(serving, "cheap flights to rome", preference="ensemble")
    assert (first.cached, again.cached, ensemble.cached) == (False, True, False)
    classifier = serving.families.get("intent").scorers["v1.0.0"]
    classifier.faults = FaultInjector({"intent-ensemble": "fail"})
    try:
        degraded = [classify(serving, "hotel in dublin", preference="ensemble") for _ in range(2)]
    finally:
        classifier.faults = FaultInjector()
    assert all(answer.fallback and not answer.cached for answer in degraded)


def test_with_the_cache_off_every_answer_is_scored(serving):
    from inference.serving.cache import NoCache

    uncached = Serving(serving.families, NoCache())
    request = SkillInferenceRequest.model_validate(student_items(1, seed=905)[0])
    answers = [infer(uncached, request, forced_version=None) for _ in range(3)]
    assert [answer.cached for answer in answers] == [False] * 3
    batch = infer_batch(uncached, student_items(5, seed=905))
    assert [result.cached for result in batch.results] == [False] * 5
    pair_free = classify(uncached, "buy cheap laptop", preference="classic")
    assert pair_free.cached is False


def test_a_per_skill_override_keys_the_cache_on_that_skills_own_model_version(trained_versions):
    settings = Settings(skills_version="v1.0.0", skill_versions={"leadership": "v1.1.0"}, families=["skills"])
    families = load_families(settings, FamilyLoader(settings, get_family))
    assert families.ready(), families.errors
    cache = MemoryCache(ttl_s=600)
    serving = Serving(families, cache)
    try:
        for skill, expected in (("leadership", "v1.1.0"), ("communication", "v1.0.0")):
            request = SkillInferenceRequest.model_validate(student_items(1, seed=906, skills=(skill,))[0])
            result = infer(serving, request, forced_version=None)
            assert result.model_version == expected
            # stored under the version of the model that answered, so changing the override can never find it
            other = "v1.0.0" if expected == "v1.1.0" else "v1.1.0"
            scorer = families.get("skills").scorers["v1.0.0"]
            key = scorer.cache_key(request)
            assert key.version == expected and run(cache.get_many([key])) != [None]
            stale = key.__class__(key.family, key.model, other, key.digest, key.student_id)
            assert run(cache.get_many([stale])) == [None]
    finally:
        families.close()


def test_the_batch_wait_setting_reaches_the_batchers_of_every_family(trained_versions, text_reports):
    loader = FamilyLoader(Settings(batcher_max_wait_ms=7), get_family)
    loaded = {family: loader.load(family, "v1.0.0") for family in ("skills", "intent", "textpair")}
    try:
        batchers = [loaded["skills"].batcher, *loaded["intent"].batchers.values(), loaded["textpair"].batcher]
        assert len(batchers) == 4 and all(batcher.max_wait == 0.007 for batcher in batchers)
    finally:
        for scorer in loaded.values():
            scorer.close()


def test_per_skill_overrides_apply_to_the_pinned_version_also_when_it_is_latest(trained_versions):
    loader = FamilyLoader(Settings(skills_version="latest", skill_versions={"leadership": "v1.0.0"}), get_family)
    pinned = loader.resolve("skills", "latest")
    scorer = loader.load("skills", pinned)
    try:
        assert pinned == "v1.1.0"  # the highest version in the session's store
        assert scorer.models["leadership"].version == "v1.0.0"
        assert scorer.models["communication"].version == "v1.1.0"
    finally:
        scorer.close()
