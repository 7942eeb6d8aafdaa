"""Versions side by side in process: routes (from the environment or a routes file), sticky choice, forced
versions, and the manager's weight changes, rollback, hot reload (validated; a failure keeps the old version),
watching the store, retiring dropped versions, and the hand-over to the other workers and to a restarted server."""

import asyncio
import shutil

import numpy as np
import pytest

from inference.errors import ArtifactError, InvalidHeader, InvalidRequest
from inference.families import get_family, pinned_tags
from inference.families.skills.family import import_skill_artifacts
from inference.families.skills.scoring import skill_model_name
from inference.schemas import SkillInferenceRequest
from inference.serving.cache import CacheKey, MemoryCache
from inference.serving.control import FileControl
from inference.serving.loader import FamilyLoader, load_families
from inference.serving.manager import ModelManager, ReloadFailed
from inference.serving.versions import TrafficSplit, VersionedFamily
from inference.settings import Settings
from inference.store.files import read_metadata, write_metadata
from inference.store.registry import available_model_versions, save_to_store, semver_key
from inference.store.text_artifacts import TextModel, check_text_model
from tests.utils.requests import delete_from_store, student_items
from train.data.catalogue import SKILLS


def test_a_route_defaults_to_all_traffic_on_stable_and_rolls_back_there():
    assert TrafficSplit(stable="v1").weights == {"v1": 100.0}
    route = TrafficSplit(stable="v1", weights={"v1": 90, "v2": 10})
    assert route.versions() == {"v1", "v2"} and route.rolled_back() == TrafficSplit(stable="v1")
    with pytest.raises(InvalidRequest, match="positive sum"):
        TrafficSplit(stable="v1", weights={"v1": 0})


def test_choice_is_sticky_by_caller_and_a_forced_version_must_be_loaded():
    family = VersionedFamily(
        "skills", {"v1": "old", "v2": "new"}, TrafficSplit(stable="v1", weights={"v1": 50, "v2": 50})
    )
    picks = {family.choose(caller_id=f"s-{i}")[0] for i in range(50)}
    assert picks == {"v1", "v2"}
    assert all(family.choose(caller_id="s-7") == family.choose(caller_id="s-7") for _ in range(5))
    assert family.choose(caller_id="s-7", forced="v2") == ("v2", "new")
    with pytest.raises(
        InvalidHeader,
        match=r"X-Model-Version \(or X-Model-Variant\): version 'v9' of skills is not loaded; loaded: v1, v2",
    ):
        family.choose(caller_id=None, forced="v9")
    with pytest.raises(ValueError, match="not loaded"):
        VersionedFamily("skills", {"v1": "old"}, TrafficSplit(stable="v1", weights={"v1": 1, "v3": 1}))


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("routes.yaml", "skills:\n  v1.0.0: 90\n  v1.1.0: 10\n"),
        ("routes.json", '{"skills": {"v1.0.0": 90, "v1.1.0": 10}}'),
    ],
)
def test_a_routes_file_wins_over_inference_routes(tmp_path, monkeypatch, name, content):
    monkeypatch.setenv("INFERENCE_ROUTES", '{"skills": {"v1.0.0": 100}}')
    from_environment = Settings(skills_version="v1.0.0")
    assert from_environment.configured_routes() == {"skills": {"v1.0.0": 100.0}}
    assert "skill-creativity:v1.1.0" not in pinned_tags(from_environment)

    (tmp_path / name).write_text(content)
    monkeypatch.setenv("INFERENCE_ROUTES_FILE", str(tmp_path / name))
    settings = Settings(skills_version="v1.0.0")
    assert settings.configured_routes() == {"skills": {"v1.0.0": 90.0, "v1.1.0": 10.0}}
    assert FamilyLoader(settings, get_family).initial_route("skills") == TrafficSplit(
        stable="v1.0.0", weights={"v1.0.0": 90.0, "v1.1.0": 10.0}
    )
    tags = pinned_tags(settings)  # what the Bento must carry: both versions of every skill
    assert {f"{skill_model_name(skill)}:{version}" for skill in SKILLS for version in ("v1.0.0", "v1.1.0")} <= set(tags)


def start_worker(state_dir):
    """One worker of a server pinned to v1.0.0 (skills only), sharing admin changes through `state_dir`, started
    as `inference.app.build` starts one (taking on the shared routes before it serves)."""
    settings = Settings(skills_version="v1.0.0", families=["skills"])
    loader = FamilyLoader(settings, get_family)
    families = load_families(settings, loader)
    assert families.ready(), families.errors
    manager = ModelManager(families, loader, FileControl(state_dir), MemoryCache(ttl_s=60), retire_after_s=0)
    manager.adopt_shared_state()
    return manager


@pytest.fixture
def managers(trained_versions, tmp_path):
    """Two managers over one shared state directory: two workers of one server."""
    made = [start_worker(tmp_path / "state") for _ in range(2)]
    yield made
    for manager in made:
        manager.families.close()


def test_new_weights_load_the_canary_beside_stable_and_the_other_worker_follows(managers):
    first, second = managers
    changed = asyncio.run(first.set_weights("skills", {"v1.0.0": 90, "v1.1.0": 10}))
    assert changed == {"route": {"stable": "v1.0.0", "weights": {"v1.0.0": 90.0, "v1.1.0": 10.0}}, "revision": 1}
    assert sorted(first.families.get("skills").scorers) == ["v1.0.0", "v1.1.0"]
    asyncio.run(second.apply_shared_state())
    assert second.routes() == first.routes()
    rolled = asyncio.run(first.rollback("skills"))
    assert rolled == {"route": {"stable": "v1.0.0", "weights": {"v1.0.0": 100.0}}, "revision": 2}
    asyncio.run(second.apply_shared_state())
    assert sorted(second.families.get("skills").scorers) == ["v1.0.0"]


def test_weights_naming_a_version_not_in_the_store_are_refused(managers):
    with pytest.raises(
        InvalidRequest, match=r"versions neither in the model store nor in the model source for skills: \['v7.0.0'\]"
    ):
        asyncio.run(managers[0].set_weights("skills", {"v1.0.0": 50, "v7.0.0": 50}))


def test_a_reload_makes_the_new_version_stable_and_a_failed_one_keeps_the_old(managers, trained_versions, tmp_path):
    manager = managers[0]
    assert asyncio.run(manager.reload("skills", "v1.1.0"))["route"] == {
        "stable": "v1.1.0",
        "weights": {"v1.1.0": 100.0},
    }
    with pytest.raises(ReloadFailed, match=r"v9\.9\.9 is not in the model store"):
        asyncio.run(manager.reload("skills", "v9.9.9"))
    # A version whose communication model was swapped for another one: the features match the catalogue,
    # but the model does not reproduce the answers stored with it, so it must not serve.
    for skill in SKILLS:
        source = tmp_path / "bad" / skill
        shutil.copytree(trained_versions["v1.0.0"] / skill, source)
        if skill == "communication":
            shutil.copy(trained_versions["v1.1.0"] / skill / "model.json", source / "model.json")
        save_to_store(skill_model_name(skill), "v1.9.0-bad", source, read_metadata(source), {"family": "skills"})
    try:
        with pytest.raises(ReloadFailed, match="does not reproduce the answers stored with it"):
            asyncio.run(manager.reload("skills", "v1.9.0-bad"))
    finally:
        delete_from_store([skill_model_name(skill) for skill in SKILLS], "v1.9.0-bad")
    assert manager.routes()["skills"]["stable"] == "v1.1.0"
    scorer = manager.families.get("skills").scorers["v1.1.0"]
    assert {model.version for model in scorer.models.values()} == {"v1.1.0"}


def test_a_restarted_server_over_a_lasting_state_dir_takes_on_the_saved_route(managers, tmp_path):
    asyncio.run(managers[0].set_weights("skills", {"v1.0.0": 80, "v1.1.0": 20}))
    restarted = start_worker(tmp_path / "state")  # INFERENCE_STATE_DIR kept across the restart
    try:
        assert restarted.routes() == managers[0].routes()  # before it serves, not a poll later
        assert restarted.routes()["skills"]["weights"] == {"v1.0.0": 80.0, "v1.1.0": 20.0}
    finally:
        restarted.families.close()


def test_a_dropped_version_loses_its_cached_answers_and_is_closed_after_the_retire_delay(managers):
    manager = managers[0]
    closed = []

    async def canary_then_rollback():
        await manager.set_weights("skills", {"v1.0.0": 90, "v1.1.0": 10})
        canary = manager.families.get("skills").scorers["v1.1.0"]
        close = canary.close
        canary.close = lambda: (closed.append("v1.1.0"), close())
        keys = [
            CacheKey("skills", skill_model_name("creativity"), version, "digest", student_id="s-1")
            for version in ("v1.0.0", "v1.1.0")
        ]
        await manager.cache.set_many(dict.fromkeys(keys, b"answer"))
        await manager.rollback("skills")
        cached = await manager.cache.get_many(keys)
        for _ in range(500):  # retire_after_s=0: closed within a few turns of the event loop
            if closed:
                break
            await asyncio.sleep(0.01)
        return cached

    assert asyncio.run(canary_then_rollback()) == [b"answer", None]
    assert closed == ["v1.1.0"]
    assert sorted(manager.families.get("skills").scorers) == ["v1.0.0"]


def test_watching_the_store_makes_a_newer_version_stable_in_every_worker(managers):
    first, second = managers
    newest = max(available_model_versions("skill-communication"), key=semver_key)
    assert semver_key(newest) > semver_key("v1.0.0")
    asyncio.run(first.reload_newer_versions())
    assert first.routes()["skills"] == {"stable": newest, "weights": {newest: 100.0}, "loaded": [newest]}
    asyncio.run(second.apply_shared_state())
    assert second.routes() == first.routes()
    asyncio.run(first.reload_newer_versions())  # nothing newer now: nothing changes
    assert first.routes()["skills"]["stable"] == newest


def test_a_version_imported_without_samples_is_checked_on_a_neutral_input_and_serves(
    managers, trained_versions, tmp_path
):
    version = "v1.8.0-nosamples"
    for skill in SKILLS:  # "your own" artifacts: no held-out samples stored with them
        shutil.copytree(trained_versions["v1.0.0"] / skill, tmp_path / version / skill)
        metadata = read_metadata(tmp_path / version / skill)
        del metadata["samples"]
        write_metadata(tmp_path / version / skill, metadata)
    import_skill_artifacts(tmp_path / version, version=version)
    try:
        assert asyncio.run(managers[0].reload("skills", version))["route"]["stable"] == version
        scorer = managers[0].families.get("skills").scorers[version]
        assert all("samples" not in model.metadata for model in scorer.models.values())
        request = SkillInferenceRequest(**student_items(1, seed=301, skills=("creativity",))[0])
        (result,) = asyncio.run(scorer.score_many([request]))
        assert result.model_version == version and 0 <= result.score <= 1
    finally:
        delete_from_store([skill_model_name(skill) for skill in SKILLS], version)


class FixedProbabilities:
    """A stand-in text estimator: the same row of probabilities for every input, and the inputs it saw."""

    def __init__(self, row):
        self.row, self.seen = row, []

    def predict_proba(self, inputs):
        self.seen.append(list(inputs))
        return np.array([self.row] * len(inputs))


NEUTRAL = [["a cat sat", "a cat was sitting"]]


def test_a_text_model_without_samples_must_answer_a_neutral_input_finitely_and_in_range():
    sane = FixedProbabilities([0.25, 0.75])
    check_text_model(TextModel("textpair", "v0", sane, ("different", "paraphrase")), NEUTRAL)
    assert sane.seen == [NEUTRAL]
    broken = FixedProbabilities([float("nan"), 1.0])
    with pytest.raises(ArtifactError, match="textpair:v0: the smoke prediction is not finite and within"):
        check_text_model(TextModel("textpair", "v0", broken, ("different", "paraphrase")), NEUTRAL)


def test_an_intent_callers_version_and_variant_are_drawn_independently():
    from inference.serving.routing import choose_variant

    salt = Settings(_env_file=None).routing_salt  # what the version split and the intent variant split both use
    family = VersionedFamily(
        "intent", {"v1": "old", "v2": "new"}, TrafficSplit(stable="v1", weights={"v1": 90, "v2": 10}), salt=salt
    )
    users = [f"user-{index}" for index in range(20_000)]
    canary = {user for user in users if family.choose(caller_id=user)[0] == "v2"}
    ensemble = {
        user
        for user in users
        if choose_variant({"classic": 90, "ensemble": 10}, caller_id=user, salt=salt) == "ensemble"
    }
    assert len(canary) / len(users) == pytest.approx(0.10, abs=0.01)
    assert len(ensemble) / len(users) == pytest.approx(0.10, abs=0.01)
    # Independent draws: about a tenth of the canary is in the ensemble (the same draw would put all of it there).
    assert len(canary & ensemble) / len(canary) == pytest.approx(0.10, abs=0.02)
