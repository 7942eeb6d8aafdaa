"""The control store: versioned admin changes with an audit, refused when another came first; the model manager
over it (conflicts, an unreachable store), for the file of one server, SQLite and PostgreSQL."""

import asyncio
import concurrent.futures
import threading

import psycopg
import pytest

from inference.errors import InferenceError
from inference.families.loader import FamilyLoader, load_families
from inference.serving.cache import MemoryCache
from inference.serving.control import ControlConflict, ControlUnavailable, FileControl, SqlControl
from inference.serving.manager import ModelManager
from inference.settings import Settings
from tests.utils.postgres import ADMIN_URL, throwaway_database


@pytest.fixture(params=["file", "sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "file":
        yield FileControl(tmp_path / "state")
    elif request.param == "sqlite":
        yield SqlControl(f"sqlite:///{tmp_path / 'control.db'}")
    else:
        with throwaway_database() as url:
            control = SqlControl(url)
            yield control
            control.engine.dispose()


def weights(family, route):
    def change(state):
        return {**state, "routes": {**state.get("routes", {}), family: route}}

    return change


def test_each_change_is_a_new_revision_with_its_audit_record(store):
    assert store.read().revision == 0 and store.read().routes() == {}
    first = store.commit(
        0, weights("skills", {"stable": "v1", "weights": {"v1": 90, "v2": 10}}), actor="alice", action="a"
    )
    second = store.commit(1, weights("intent", {"stable": "v3", "weights": {"v3": 100}}), actor="bob", action="b")
    assert (first.revision, second.revision) == (1, 2)
    read = store.read()
    assert read.revision == 2 and read.changed_by == "bob" and read.changed_at
    assert read.routes() == {
        "skills": {"stable": "v1", "weights": {"v1": 90, "v2": 10}},
        "intent": {"stable": "v3", "weights": {"v3": 100}},
    }
    audit = store.audit()
    assert [(entry["revision"], entry["changed_by"], entry["action"]) for entry in audit] == [
        (2, "bob", "b"),
        (1, "alice", "a"),
    ]
    assert audit[1]["state"] == {"routes": {"skills": {"stable": "v1", "weights": {"v1": 90, "v2": 10}}}}


def test_a_change_based_on_an_old_revision_is_refused_and_writes_nothing(store):
    store.commit(0, weights("skills", {"stable": "v1", "weights": {"v1": 100}}), actor="alice", action="first")
    with pytest.raises(ControlConflict, match=r"based on revision 0, now at revision 1 \(alice at "):
        store.commit(0, weights("skills", {"stable": "v2", "weights": {"v2": 100}}), actor="bob", action="late")
    assert store.read().routes()["skills"]["stable"] == "v1"
    assert [entry["action"] for entry in store.audit()] == ["first"]


def test_of_many_changes_at_once_from_one_revision_exactly_one_wins(store):
    # PostgreSQL: every writer reads revision 0 before any writes. The file and SQLite take their lock before
    # reading, so there the writers queue (a barrier would wait forever) and each later one sees revision 1.
    barrier = threading.Barrier(8 if store.kind == "postgresql" else 1)

    def change(index):
        def slow(state):
            barrier.wait(timeout=10)  # every writer has read revision 0 before any writes
            return weights("skills", {"stable": f"v{index}", "weights": {f"v{index}": 100}})(state)

        try:
            return store.commit(0, slow, actor=f"writer-{index}", action=str(index))
        except ControlConflict:
            return None

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(change, range(8)))
    winners = [outcome for outcome in outcomes if outcome is not None]
    assert len(winners) == 1 and store.read().revision == 1
    assert store.read().routes()["skills"]["stable"] == winners[0].routes()["skills"]["stable"]
    assert len(store.audit()) == 1


# --- the model manager over the store ---------------------------------------------------------------------------


def worker(control):
    settings = Settings(skills_version="v1.0.0", families=["skills"])
    loader = FamilyLoader(settings)
    families = load_families(settings, loader)
    assert families.ready(), families.errors
    manager = ModelManager(families, loader, control, MemoryCache(ttl_s=60), retire_after_s=0)
    manager.adopt_shared_state()
    return manager


@pytest.fixture
def two_replicas(trained_versions, store):
    made = [worker(store), worker(store)]
    yield made
    for manager in made:
        manager.families.close()


def test_a_change_reaches_the_other_replica_and_a_stale_one_is_told(two_replicas, store):
    first, second = two_replicas
    asyncio.run(first.set_weights("skills", {"v1.0.0": 90, "v1.1.0": 10}, actor="alice"))
    asyncio.run(second.apply_shared_state())
    assert second.routes() == first.routes() and second.revision() == first.revision() == 1
    # A caller who read revision 0 (If-Match) is refused, and the replica it reached serves what it served.
    with pytest.raises(ControlConflict) as refused:
        asyncio.run(second.rollback("skills", actor="bob", based_on=0))
    assert refused.value.status == 409 and "alice" in refused.value.message
    assert second.routes()["skills"]["weights"] == {"v1.0.0": 90.0, "v1.1.0": 10.0}
    assert [entry["changed_by"] for entry in store.audit()] == ["alice"]


def test_two_admin_calls_at_once_on_two_replicas_one_is_refused(two_replicas, store):
    first, second = two_replicas

    async def both():
        return await asyncio.gather(
            first.set_weights("skills", {"v1.0.0": 80, "v1.1.0": 20}, actor="alice"),
            second.set_weights("skills", {"v1.0.0": 50, "v1.1.0": 50}, actor="bob"),
            return_exceptions=True,
        )

    outcomes = asyncio.run(both())
    refused = [outcome for outcome in outcomes if isinstance(outcome, ControlConflict)]
    applied = [outcome for outcome in outcomes if isinstance(outcome, dict)]
    assert len(refused) == 1 and len(applied) == 1, outcomes
    assert store.read().routes()["skills"] == applied[0] and len(store.audit()) == 1
    loser = second if isinstance(outcomes[1], ControlConflict) else first
    assert loser.routes()["skills"]["weights"] == {"v1.0.0": 100.0}  # nothing changed where it was refused
    asyncio.run(loser.apply_shared_state())
    assert loser.routes()["skills"] == {**applied[0], "loaded": ["v1.0.0", "v1.1.0"]}


def test_a_replica_that_loses_its_store_keeps_its_routes_and_says_so(trained_versions):
    with throwaway_database() as url:
        control = SqlControl(url, connect_timeout_s=1)
        manager = worker(control)
        try:
            asyncio.run(manager.set_weights("skills", {"v1.0.0": 70, "v1.1.0": 30}, actor="alice"))
            assert manager.control_status()["reachable"] is True
            control.engine.dispose()
            with psycopg.connect(ADMIN_URL, autocommit=True) as admin:  # the store goes away under the replica
                admin.execute(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
            asyncio.run(manager.apply_shared_state())
            status = manager.control_status()
            assert status["reachable"] is False and status["revision"] == 1 and status["error"], status
            assert manager.routes()["skills"]["weights"] == {"v1.0.0": 70.0, "v1.1.0": 30.0}
            with pytest.raises(ControlUnavailable) as refused:
                asyncio.run(manager.rollback("skills", actor="alice"))
            assert isinstance(refused.value, InferenceError) and refused.value.status == 503
            assert manager.routes()["skills"]["weights"] == {"v1.0.0": 70.0, "v1.1.0": 30.0}
        finally:
            manager.families.close()


def test_a_version_not_in_the_local_store_is_pulled_from_the_shared_model_source(trained_versions, tmp_path):
    """An image carries v1.0.0; v1.4.0 was exported to the volume every replica mounts (`bentoml models export`):
    a weight change and a reload naming it import it into the replica's store first."""
    import bentoml

    from inference.families.skills.family import import_skill_artifacts
    from inference.families.skills.scoring import skill_model_name
    from tests.utils.requests import delete_from_store
    from train.data.catalogue import SKILLS

    version, source = "v1.4.0", tmp_path / "models-volume"
    names = [skill_model_name(skill) for skill in SKILLS]
    import_skill_artifacts(trained_versions["v1.1.0"], version=version)
    source.mkdir()
    for name in names:
        bentoml.models.export_model(f"{name}:{version}", str(source))
    delete_from_store(names, version)
    settings = Settings(skills_version="v1.0.0", families=["skills"], model_source=str(source))
    loader = FamilyLoader(settings)
    families = load_families(settings, loader)
    manager = ModelManager(families, loader, FileControl(tmp_path / "state"), MemoryCache(ttl_s=60), retire_after_s=0)
    try:
        assert sorted(path.name for path in source.iterdir()) == sorted(
            f"{name}-{version}.bentomodel" for name in names
        )
        route = asyncio.run(manager.set_weights("skills", {"v1.0.0": 50, version: 50}))
        assert route["weights"] == {"v1.0.0": 50.0, version: 50.0}
        assert all(bentoml.models.get(f"{name}:{version}") for name in names)  # now in the local store
        delete_from_store(names, version)
        assert asyncio.run(manager.reload("skills", version))["stable"] == version  # by reload too
        (source / f"{names[0]}-{version}.bentomodel").unlink()
        delete_from_store(names, version)
        with pytest.raises(InferenceError, match=rf"{names[0]}:{version} is neither in the model store nor at"):
            asyncio.run(manager.reload("skills", version))
    finally:
        families.close()
        delete_from_store(names, version)
