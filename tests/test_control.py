"""The control store: versioned admin changes with an audit, refused when another came first, and the records of
the admin operations; the model manager over it (conflicts, an unreachable store, a revision that does not load
at first, versions checked before use), for the file of one server, SQLite and PostgreSQL."""

import asyncio
import concurrent.futures
import re
import subprocess
import threading
import time
import uuid

import psycopg
import pytest

from inference.errors import ArtifactError, InferenceError, InvalidRequest
from inference.families import get_family
from inference.serving import control as control_module
from inference.serving.cache import MemoryCache
from inference.serving.control import ControlConflict, ControlUnavailable, FileControl, SqlControl
from inference.serving.loader import Families, FamilyLoader, load_families
from inference.serving.manager import (
    InvalidVersion,
    ModelManager,
    ReloadFailed,
    UnknownFamily,
    UnknownOperation,
)
from inference.serving.operations import Operations
from inference.serving.versions import TrafficSplit, VersionedFamily
from inference.settings import Settings
from inference.store.registry import SOURCE_MANIFEST
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
    loader = FamilyLoader(settings, get_family)
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
    assert store.read().routes()["skills"] == applied[0]["route"] and len(store.audit()) == 1
    loser = second if isinstance(outcomes[1], ControlConflict) else first
    assert loser.routes()["skills"]["weights"] == {"v1.0.0": 100.0}  # nothing changed where it was refused
    asyncio.run(loser.apply_shared_state())
    assert loser.routes()["skills"] == {**applied[0]["route"], "loaded": ["v1.0.0", "v1.1.0"]}


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
    """An image carries v1.0.0; v1.4.0 was exported to the volume every replica mounts (`bentoml models export`,
    then the manifest as docs/versions.md writes it): a weight change and a reload naming it import it into the
    replica's store first; a file the manifest does not vouch for is refused, and nothing of it is imported."""
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
    subprocess.run(f"cd {source} && sha256sum *.bentomodel > {SOURCE_MANIFEST}", shell=True, check=True)
    delete_from_store(names, version)
    settings = Settings(skills_version="v1.0.0", families=["skills"], model_source=str(source))
    loader = FamilyLoader(settings, get_family)
    families = load_families(settings, loader)
    manager = ModelManager(families, loader, FileControl(tmp_path / "state"), MemoryCache(ttl_s=60), retire_after_s=0)
    try:
        assert sorted(path.name for path in source.iterdir()) == sorted(
            [SOURCE_MANIFEST, *(f"{name}-{version}.bentomodel" for name in names)]
        )
        changed = asyncio.run(manager.set_weights("skills", {"v1.0.0": 50, version: 50}))
        assert changed["route"]["weights"] == {"v1.0.0": 50.0, version: 50.0}
        assert all(bentoml.models.get(f"{name}:{version}") for name in names)  # now in the local store
        delete_from_store(names, version)
        assert asyncio.run(manager.reload("skills", version))["route"]["stable"] == version  # by reload too

        asyncio.run(manager.reload("skills", "v1.0.0"))
        delete_from_store(names, version)
        tampered = source / f"{names[-1]}-{version}.bentomodel"
        with tampered.open("ab") as file:
            file.write(b"\0")
        with pytest.raises(
            ReloadFailed, match=rf"{re.escape(str(tampered))}: its sha256 is [0-9a-f]{{64}}, not [0-9a-f]{{64}}"
        ):
            asyncio.run(manager.set_weights("skills", {"v1.0.0": 50, version: 50}))
        assert not any(version in (model.tag.version for model in bentoml.models.list(name)) for name in names)
        assert manager.routes()["skills"]["weights"] == {"v1.0.0": 100.0}

        (source / f"{names[0]}-{version}.bentomodel").unlink()
        with pytest.raises(InferenceError, match=rf"{names[0]}:{version} is neither in the model store nor at"):
            asyncio.run(manager.reload("skills", version))
    finally:
        families.close()
        delete_from_store(names, version)


# --- a revision that does not load at first, with loader fakes: no models, a clock the test moves ----------------


class FakeScorer:
    def __init__(self, version):
        self.version, self.closed, self.controls_applied = version, False, None

    def model_names(self):
        return ["skill-fake"]

    def controls(self):
        return {"ensemble": {"enabled": True}}

    def control(self, name):
        return {"enabled": True}

    def apply_control(self, controls):
        self.controls_applied = controls

    def close(self):
        self.closed = True


class FakeLoader:
    """Loads fake scorers of the versions in `stored`; a version in `failing` fails that many loads first. Every
    call is recorded in `calls`."""

    def __init__(self, stored=("v1.0.0", "v1.1.0"), failing=None):
        self.stored, self.failing, self.calls = list(stored), dict(failing or {}), []

    def versions(self, family):
        self.calls.append(("versions", family))
        return list(self.stored)

    def pull(self, family, version):
        self.calls.append(("pull", version))

    def resolve(self, family, version):
        self.calls.append(("resolve", version))
        if version not in self.stored:
            raise ArtifactError(f"{version} is not in the model store")
        return version

    def build(self, family, route, loaded=None):
        scorers = {version: scorer for version, scorer in (loaded or {}).items() if version in route.versions()}
        for version in sorted(route.versions() - set(scorers)):
            self.calls.append(("load", version))
            if self.failing.get(version, 0) > 0:
                self.failing[version] -= 1
                raise ArtifactError(f"skill-fake:{version}: model.json is truncated")
            scorers[version] = FakeScorer(version)
        return VersionedFamily(family=family, scorers=scorers, route=route)

    def report_route(self, family, route, dropped=()):
        pass

    def loads(self):
        return [version for call, version in self.calls if call == "load"]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def fake_worker(control, loader, clock):
    """A worker serving skills v1.0.0, started as `inference.app.build` starts one."""
    stable = VersionedFamily("skills", {"v1.0.0": FakeScorer("v1.0.0")}, TrafficSplit(stable="v1.0.0"))
    families = Families(enabled=["skills"], versions={"skills": stable})
    manager = ModelManager(families, loader, control, MemoryCache(ttl_s=60), retire_after_s=0, clock=clock)
    manager.adopt_shared_state()
    return manager


def test_a_revision_that_does_not_load_stays_pending_and_is_tried_again_with_a_growing_delay_until_it_applies(
    tmp_path,
):
    control, clock = FileControl(tmp_path / "state"), Clock()
    deployer = fake_worker(control, FakeLoader(), clock)
    flaky = FakeLoader(failing={"v1.1.0": 7})
    follower = fake_worker(control, flaky, clock)
    asyncio.run(deployer.set_weights("skills", {"v1.0.0": 90, "v1.1.0": 10}))  # revision 1

    delays = []
    for attempt in range(1, 8):
        asyncio.run(follower.apply_shared_state())
        status = follower.control_status()
        assert (follower.revision(), status["revision"]) == (0, 0)  # still the last revision applied in full
        assert status["pending_revision"] == 1 and status["apply_attempts"] == attempt
        assert "skill-fake:v1.1.0: model.json is truncated" in status["apply_error"]
        assert follower.routes()["skills"]["weights"] == {"v1.0.0": 100.0}  # and it serves what it applied
        delays.append(status["retry_in_s"])
        clock.now += status["retry_in_s"] - 0.1
        asyncio.run(follower.apply_shared_state())  # a poll before the delay is over loads nothing
        assert flaky.loads() == ["v1.1.0"] * attempt
        clock.now += 0.1
    assert delays == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]  # doubling, at most a minute

    asyncio.run(follower.apply_shared_state())  # the eighth try loads
    status = follower.control_status()
    assert follower.revision() == 1 and status["pending_revision"] is None and status["apply_error"] is None
    assert follower.routes()["skills"] == {**deployer.routes()["skills"]}
    assert flaky.loads() == ["v1.1.0"] * 8


def test_a_newer_revision_is_tried_at_once_and_its_controls_apply_while_its_routes_wait(tmp_path):
    control, clock = FileControl(tmp_path / "state"), Clock()
    deployer = fake_worker(control, FakeLoader(), clock)
    flaky = FakeLoader(failing={"v1.1.0": 2})
    follower = fake_worker(control, flaky, clock)
    asyncio.run(deployer.set_weights("skills", {"v1.0.0": 90, "v1.1.0": 10}))
    asyncio.run(follower.apply_shared_state())
    assert follower.control_status()["pending_revision"] == 1

    # The kill switch (a runtime control) must not wait for a model to load.
    asyncio.run(deployer.set_control("skills", "ensemble", {"enabled": False}))
    asyncio.run(follower.apply_shared_state())  # revision 2 is newer: tried now, not after the delay
    assert flaky.loads() == ["v1.1.0", "v1.1.0"]
    assert follower.families.get("skills").scorers["v1.0.0"].controls_applied == {"ensemble": {"enabled": False}}
    status = follower.control_status()
    assert (status["revision"], status["pending_revision"], status["apply_attempts"]) == (0, 2, 1)

    asyncio.run(deployer.rollback("skills"))  # revision 3 needs nothing this worker lacks
    asyncio.run(follower.apply_shared_state())
    status = follower.control_status()
    assert (status["revision"], status["pending_revision"], status["apply_error"]) == (3, None, None)


def test_a_starting_worker_that_cannot_load_the_shared_route_serves_its_own_and_applies_the_shared_one_later(
    tmp_path,
):
    control, clock = FileControl(tmp_path / "state"), Clock()
    asyncio.run(fake_worker(control, FakeLoader(), clock).reload("skills", "v1.1.0"))  # revision 1
    flaky = FakeLoader(failing={"v1.1.0": 1})
    started = fake_worker(control, flaky, clock)
    status = started.control_status()
    assert status["revision"] is None and status["pending_revision"] == 1 and status["retry_in_s"] == 2.0
    assert started.routes()["skills"]["stable"] == "v1.0.0"
    asyncio.run(started.apply_shared_state())
    assert flaky.loads() == ["v1.1.0"]  # not before its delay
    clock.now += 2
    asyncio.run(started.apply_shared_state())
    assert started.revision() == 1 and started.routes()["skills"]["stable"] == "v1.1.0"
    assert started.control_status()["pending_revision"] is None


@pytest.mark.parametrize(
    "bad", ["../../etc/passwd", "v1.0", "1.0.0", "V1.0.0", "v1.0.0/../x", "latest/..", "v1.0.0 ", "v1.0.0\n"]
)
def test_a_version_that_is_not_semver_is_refused_before_anything_is_looked_up(tmp_path, bad):
    loader = FakeLoader()
    manager = fake_worker(FileControl(tmp_path / "state"), loader, Clock())
    with pytest.raises(
        InvalidVersion, match=r"^weights: version .* is not a semantic version like v1\.2\.0"
    ) as weights:
        asyncio.run(manager.set_weights("skills", {"v1.0.0": 50, bad: 50}))
    with pytest.raises(InvalidVersion, match=r"^version: version .* or `latest`$") as reload:
        asyncio.run(manager.reload("skills", bad))
    assert weights.value.status == reload.value.status == 400 and weights.value.code == "invalid_version"
    with pytest.raises(InvalidVersion, match="at most 64 characters"):
        asyncio.run(manager.reload("skills", "v1.0.0-" + "a" * 100))
    with pytest.raises(UnknownFamily, match=r"family: '\.\./skills' is not served here; served: skills"):
        asyncio.run(manager.reload("../skills", "v1.1.0"))
    assert loader.calls == []  # no store, source or loader lookup was made with it
    assert manager.state.read().revision == 0


# --- operations: the records in the store, and running them ---------------------------------------------------


def test_an_operation_record_is_written_read_back_by_id_and_dropped_a_day_later(store, monkeypatch):
    record = {"id": uuid.uuid4().hex, "status": "running", "action": "skills: reload v1.1.0", "result": None}
    saved = store.save_operation(record)
    assert saved["updated_at"] and store.operation(record["id"]) == saved
    done = store.save_operation({**record, "status": "succeeded", "result": {"revision": 4}})
    assert store.operation(record["id"]) == done and done["result"] == {"revision": 4}
    for unknown in (uuid.uuid4().hex, "../admin-state", record["id"].upper(), ""):
        assert store.operation(unknown) is None
    monkeypatch.setattr(control_module, "KEEP_OPERATIONS_S", 0.5)  # "a day", shortened
    time.sleep(1.1)
    newer = store.save_operation({**record, "id": uuid.uuid4().hex})
    assert store.operation(record["id"]) is None and store.operation(newer["id"]) == newer


class CountingStore(FileControl):
    def __init__(self, directory):
        super().__init__(directory)
        self.saved = []

    def save_operation(self, record):
        self.saved.append(record["status"])
        return super().save_operation(record)


def test_an_operation_goes_on_when_nobody_waits_and_its_record_says_how_it_ended(tmp_path):
    store = CountingStore(tmp_path / "state")
    operations = Operations(store, heartbeat_s=0.05)

    async def scenario():
        release = asyncio.Event()

        async def slow_change():
            await release.wait()
            return {"route": {"stable": "v1.1.0", "weights": {"v1.1.0": 100.0}}, "revision": 3}

        started = await operations.start("skills: reload v1.1.0", actor="alice", work=slow_change)
        assert await started.outcome(0.05) is None  # the call stops waiting ...
        waiter = asyncio.ensure_future(started.outcome(60))
        await asyncio.sleep(0.01)
        waiter.cancel()  # ... or is cancelled (the request timed out): the change goes on
        await asyncio.sleep(0.2)
        running = store.operation(started.record["id"])
        assert running["status"] == "running" and running["started_by"] == "alice" and running["worker"]
        assert store.saved.count("running") >= 3  # the first write, then the heartbeats
        release.set()
        finished = await started.task
        assert finished["status"] == "succeeded" and finished["result"]["revision"] == 3 and finished["finished_at"]
        assert store.operation(started.record["id"]) == finished and store.saved[-1] == "succeeded"

        async def failing_change():
            raise ReloadFailed("skills v6.6.6: not in the model store; still serving v1.0.0")

        failed = await (await operations.start("skills: reload v6.6.6", actor="bob", work=failing_change)).outcome(5)
        assert failed["status"] == "failed" and failed["result"] is None
        assert failed["error"] == {
            "code": "reload_failed",
            "status": 409,
            "message": "skills v6.6.6: not in the model store; still serving v1.0.0",
        }
        assert store.operation(failed["id"])["error"]["code"] == "reload_failed"

    asyncio.run(scenario())


def test_the_manager_reads_any_workers_operation_and_says_how_long_since_it_was_updated(tmp_path):
    control = FileControl(tmp_path / "state")
    manager = fake_worker(control, FakeLoader(), Clock())
    stranded = control.save_operation({"id": uuid.uuid4().hex, "status": "running", "action": "skills: reload"})
    read = asyncio.run(manager.operation(stranded["id"]))
    assert read["status"] == "running" and read["updated_at"] == stranded["updated_at"]
    assert 0 <= read["updated_s_ago"] < 60
    with pytest.raises(UnknownOperation) as unknown:
        asyncio.run(manager.operation(uuid.uuid4().hex))
    assert unknown.value.status == 404 and unknown.value.code == "unknown_operation"
    with pytest.raises(InvalidRequest, match="id: expected the 32 hexadecimal characters"):
        asyncio.run(manager.operation("../admin-state"))
