"""Versions side by side in process: routes, sticky choice, forced versions, and the manager's weight changes,
rollback, hot reload (validated; a failure keeps the old version) and the hand-over to the other workers."""

import asyncio
import shutil

import pytest

from inference.artifacts import read_metadata
from inference.cache import MemoryCache
from inference.catalogue import SKILLS
from inference.errors import InvalidHeader, InvalidRequest
from inference.families import FamilyLoader, load_families
from inference.manager import ModelManager, ReloadFailed
from inference.registry import save_to_store, skill_model_name
from inference.settings import Settings
from inference.state import SharedState
from inference.versions import Route, VersionedFamily
from tests.utils.requests import delete_from_store


def test_a_route_defaults_to_all_traffic_on_stable_and_rolls_back_there():
    assert Route(stable="v1").weights == {"v1": 100.0}
    route = Route(stable="v1", weights={"v1": 90, "v2": 10})
    assert route.versions() == {"v1", "v2"} and route.rolled_back() == Route(stable="v1")
    with pytest.raises(InvalidRequest, match="positive sum"):
        Route(stable="v1", weights={"v1": 0})


def test_choice_is_sticky_by_caller_and_a_forced_version_must_be_loaded():
    family = VersionedFamily("skills", {"v1": "old", "v2": "new"}, Route(stable="v1", weights={"v1": 50, "v2": 50}))
    picks = {family.choose(caller_id=f"s-{i}")[0] for i in range(50)}
    assert picks == {"v1", "v2"}
    assert all(family.choose(caller_id="s-7") == family.choose(caller_id="s-7") for _ in range(5))
    assert family.choose(caller_id="s-7", forced="v2") == ("v2", "new")
    with pytest.raises(InvalidHeader, match="X-Model-Variant: version 'v9' of skills is not loaded; loaded: v1, v2"):
        family.choose(caller_id=None, forced="v9")
    with pytest.raises(ValueError, match="not loaded"):
        VersionedFamily("skills", {"v1": "old"}, Route(stable="v1", weights={"v1": 1, "v3": 1}))


@pytest.fixture
def managers(trained_versions, tmp_path):
    """Two managers over one shared state directory: two workers of one server."""
    settings = Settings(skills_version="v1.0.0", families=["skills"])
    made = []
    for _ in range(2):
        loader = FamilyLoader(settings)
        families = load_families(settings, loader)
        assert families.ready(), families.errors
        made.append(
            ModelManager(families, loader, SharedState(tmp_path / "state"), MemoryCache(ttl_s=60), retire_after_s=0)
        )
    yield made
    for manager in made:
        manager.families.close()


def test_new_weights_load_the_canary_beside_stable_and_the_other_worker_follows(managers):
    first, second = managers
    route = asyncio.run(first.set_weights("skills", {"v1.0.0": 90, "v1.1.0": 10}))
    assert route == {"stable": "v1.0.0", "weights": {"v1.0.0": 90.0, "v1.1.0": 10.0}}
    assert sorted(first.families.get("skills").scorers) == ["v1.0.0", "v1.1.0"]
    asyncio.run(second.apply_shared_state())
    assert second.routes() == first.routes()
    rolled = asyncio.run(first.rollback("skills"))
    assert rolled == {"stable": "v1.0.0", "weights": {"v1.0.0": 100.0}}
    asyncio.run(second.apply_shared_state())
    assert sorted(second.families.get("skills").scorers) == ["v1.0.0"]


def test_weights_naming_a_version_not_in_the_store_are_refused(managers):
    with pytest.raises(InvalidRequest, match=r"versions not in the model store for skills: \['v7.0.0'\]"):
        asyncio.run(managers[0].set_weights("skills", {"v1.0.0": 50, "v7.0.0": 50}))


def test_a_reload_makes_the_new_version_stable_and_a_failed_one_keeps_the_old(managers, trained_versions, tmp_path):
    manager = managers[0]
    assert asyncio.run(manager.reload("skills", "v1.1.0")) == {"stable": "v1.1.0", "weights": {"v1.1.0": 100.0}}
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
