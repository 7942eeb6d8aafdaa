"""Changing what a running deployment serves, without a restart: weights, rollback, hot reload of a version.

Every change follows the same steps: read the control state's revision, load what the new route needs beside
what serves now (on a thread, so requests keep flowing), validate it, commit the route to the control store
based on that revision (refused when another change came first: `ControlConflict`), swap the family's
`VersionedFamily` in one assignment, and close what the new route dropped once the requests holding it are done.
A change that fails to load or validate leaves the old version serving and raises `ReloadFailed` with the reason.

Every worker of every replica follows the store (`follow`): it applies each newer revision within about a second.
A revision counts as applied (`revision()`, /health) only once every family's route of it serves here; when one
does not load, the worker keeps serving what it applied last, says which revision is pending and why
(`control_status`), and tries again after 2, 4, 8 ... s (at most a minute: loading models every second would
starve the requests), or at once when a newer revision comes. Runtime controls (the ensemble flag) take effect
from the newest revision at once: a kill switch must not wait for a model to load. When the store cannot be read,
the worker keeps what it applied last and says so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from inference.errors import ArtifactError, InferenceError, InvalidRequest
from inference.logs import LOGGER_NAME
from inference.monitoring.metrics import Metrics, NoMetrics
from inference.serving.cache import ResultCache
from inference.serving.control import (
    OPERATION_ID,
    ControlConflict,
    ControlStore,
    Snapshot,
    State,
    store_unavailable,
)
from inference.serving.loader import Families, FamilyLoader
from inference.serving.operations import Operations, seconds_since
from inference.serving.protocol import RuntimeControls
from inference.serving.versions import TrafficSplit, VersionedFamily
from inference.settings import LATEST
from inference.store.registry import UntrustedArtifact, check_semver, semver_key

logger = logging.getLogger(LOGGER_NAME)

STATE_POLL_S = 1.0
RETRY_FIRST_S = 2.0  # a revision that did not apply is tried again after this, doubling each time
RETRY_MAX_S = 60.0
MAX_VERSION_CHARS = 64  # a version names store tags and files


class ReloadFailed(InferenceError):
    """The new version did not load or validate; the old one keeps serving."""

    code = "reload_failed"
    status = HTTPStatus.CONFLICT


class UnknownFamily(InvalidRequest):
    """An admin call names a family this server does not serve."""

    code = "unknown_family"


class InvalidVersion(InvalidRequest):
    """An admin call names a version that is not a semantic version like v1.2.0 (the message names the field)."""

    code = "invalid_version"


class UnknownOperation(InferenceError):
    """No admin operation has this id on any replica (never started, or not updated for a day and dropped)."""

    code = "unknown_operation"
    status = HTTPStatus.NOT_FOUND


@dataclass(frozen=True)
class Change:
    """An admin change to commit: the revision it was based on, which token made it, what it does."""

    based_on: int
    actor: str
    action: str


@dataclass(frozen=True)
class PendingRevision:
    """A revision of the control state this worker could not apply yet, and when it tries again."""

    revision: int
    error: str
    attempts: int
    retry_at: float  # on the manager's clock


class ModelManager:
    def __init__(
        self,
        families: Families,
        loader: FamilyLoader,
        state: ControlStore,
        cache: ResultCache,
        *,
        retire_after_s: float = 10.0,
        watch_store_s: float = 0.0,
        metrics: Metrics | None = None,
        retry_first_s: float = RETRY_FIRST_S,
        retry_max_s: float = RETRY_MAX_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.families = families
        self.loader = loader
        self.state = state
        self.cache = cache
        self.retire_after_s = retire_after_s
        self.watch_store_s = watch_store_s
        self.metrics = metrics or NoMetrics()
        self.retry_first_s = retry_first_s
        self.retry_max_s = retry_max_s
        self.clock = clock
        self.operations = Operations(state)
        self._lock = asyncio.Lock()
        self._seen_revision: int | None = None  # the last revision every family's route of which serves here
        self._newest_committed = -1  # the last revision this worker committed (it may not have applied all of it)
        self._pending: PendingRevision | None = None
        self._controls: dict[str, Any] = {}  # the runtime controls of the newest revision read or committed
        self._controls_revision = -1
        self._unreachable_since: float | None = None  # monotonic; None while the store answers
        self._last_error: str | None = None
        self._retiring: set[asyncio.Task[None]] = set()

    # --- what the admin API calls (then every worker follows through the shared state) ------------------

    def routes(self) -> dict[str, Any]:
        return {
            family: {**versioned.route.to_dict(), "loaded": sorted(versioned.scorers)}
            for family, versioned in self.families.versions.items()
        }

    def check_change(self, family: str, versions: Iterable[str] = (), *, field: str = "version") -> None:
        """Refuse a change before anything is looked up, loaded or started: a family not served here
        (`UnknownFamily`), a version that is not a semantic version like v1.2.0 (`InvalidVersion` naming `field`;
        `latest` passes where `field` is `version`)."""
        self._current(family)
        for version in versions:
            if field == "version" and version == LATEST:
                continue
            if len(version) > MAX_VERSION_CHARS:
                raise InvalidVersion(f"{field}: a version is at most {MAX_VERSION_CHARS} characters, like v1.2.0")
            try:
                check_semver(version)
            except ValueError as err:
                expected = " or `latest`" if field == "version" else ""
                raise InvalidVersion(f"{field}: {err}{expected}") from err

    async def set_weights(
        self, family: str, weights: Mapping[str, float], *, actor: str = "admin", based_on: int | None = None
    ) -> dict[str, Any]:
        """Split the family's traffic by `weights`, loading (and validating) the versions not loaded yet; the new
        route and the revision that holds it."""
        self.check_change(family, weights, field="weights")
        current = self._current(family)
        snapshot = await self._snapshot(based_on)
        stored = set(await asyncio.to_thread(self.loader.versions, family))
        for version in sorted(set(weights) - stored):  # a version not baked in: from the shared model source
            try:
                await asyncio.to_thread(self.loader.pull, family, version)
            except UntrustedArtifact as err:  # there, but refused: the caller must learn why
                raise ReloadFailed(f"weights: {err.message}; nothing changed") from err
            except ArtifactError:  # in neither place: named below with the others
                continue
        unknown = sorted(set(weights) - set(await asyncio.to_thread(self.loader.versions, family)))
        if unknown:
            raise InvalidRequest(
                f"weights: versions neither in the model store nor in the model source for {family}: {unknown}"
            )
        stable = self._shared_route(family, snapshot, current.route).stable
        route = TrafficSplit(stable=stable, weights={version: float(w) for version, w in weights.items()})
        revision = await self._change(
            family, route, Change(snapshot.revision, actor, f"{family}: weights {route.to_dict()}")
        )
        return {"route": route.to_dict(), "revision": revision}

    async def rollback(self, family: str, *, actor: str = "admin", based_on: int | None = None) -> dict[str, Any]:
        """All of the family's traffic to its stable version; the new route and the revision that holds it."""
        current = self._current(family)
        snapshot = await self._snapshot(based_on)
        route = self._shared_route(family, snapshot, current.route).rolled_back()
        change = Change(snapshot.revision, actor, f"{family}: rollback to {route.stable}")
        return {"route": route.to_dict(), "revision": await self._change(family, route, change)}

    async def reload(
        self, family: str, version: str, *, actor: str = "admin", based_on: int | None = None
    ) -> dict[str, Any]:
        """Make `version` (or `latest`) the family's stable version, serving all its traffic; the new route and
        the revision that holds it."""
        self.check_change(family, [version], field="version")
        snapshot = await self._snapshot(based_on)
        try:
            resolved = await asyncio.to_thread(self.loader.resolve, family, version)
        except ArtifactError as err:
            raise ReloadFailed(f"{family} {version}: {err.message}; still serving the previous version") from err
        route = TrafficSplit(stable=resolved, weights={resolved: 100.0})
        revision = await self._change(family, route, Change(snapshot.revision, actor, f"{family}: reload {resolved}"))
        return {"route": route.to_dict(), "revision": revision}

    async def set_control(
        self,
        family: str,
        name: str,
        changes: dict[str, Any],
        *,
        actor: str = "admin",
        based_on: int | None = None,
        reason: str = "",
    ) -> dict[str, Any]:
        """Change a family's runtime control (intent: `ensemble`, the dual-mode flag) for every replica: the
        fields given replace the current ones; `reason`, when given, follows the change in the audit. Answers
        `{name: the control after the change, "revision": ...}`."""
        versioned = self._current(family)
        current = _control_of(versioned.scorers[versioned.route.stable], family, name)
        snapshot = await self._snapshot(based_on)
        merged = {**current, **_stored_control(snapshot.state, family, name), **changes}

        def change(state: State) -> State:
            controls = state.get("controls", {})
            family_controls = {**controls.get(family, {}), name: merged}
            return {**state, "controls": {**controls, family: family_controls}}

        async with self._lock:
            action = f"{family}: {name} {merged}" + (f"; {reason}" if reason else "")
            committed = await self._commit(Change(snapshot.revision, actor, action), change)
        logger.info("%s %s now %s", family, name, merged)
        return {name: merged, "revision": committed.revision}

    async def stored_control(self, family: str, name: str) -> tuple[int, dict[str, Any]]:
        """The control store's revision and a family's runtime control as stored in it (empty: never changed, the
        configured one applies); `ControlUnavailable` when the store cannot be read."""
        snapshot = await self._snapshot(None)
        return snapshot.revision, _stored_control(snapshot.state, family, name)

    async def operation(self, operation_id: str) -> dict[str, Any]:
        """An admin operation's record, read from the control store (any worker of any replica may have run it),
        with the seconds since its worker last wrote it."""
        if not OPERATION_ID.match(operation_id):
            raise InvalidRequest(
                f"id: expected the 32 hexadecimal characters of an operation id, got {operation_id[:40]!r}"
            )
        try:
            record = await asyncio.to_thread(self.state.operation, operation_id)
        except Exception as err:
            raise store_unavailable(self.state.kind, err) from err
        if record is None:
            raise UnknownOperation(f"id: no operation {operation_id} (operations are kept for a day)")
        return {**record, "updated_s_ago": seconds_since(record.get("updated_at"))}

    def controls(self) -> dict[str, dict[str, Any]]:
        """Each family's runtime controls as its stable version applies them."""
        found: dict[str, dict[str, Any]] = {}
        for family, versioned in self.families.versions.items():
            scorer = versioned.scorers[versioned.route.stable]
            if isinstance(scorer, RuntimeControls):
                found[family] = scorer.controls()
        return found

    def revision(self) -> int | None:
        """The control state's revision this worker applied last, every family's route of it (None: none yet)."""
        return self._seen_revision

    def control_status(self) -> dict[str, Any]:
        """Where the control state lives, the revision applied, whether the store answered at the last look, and
        a newer revision not applied yet: which, why, how often it was tried, when it is tried again."""
        unreachable, pending = self._unreachable_since, self._pending
        return {
            "store": self.state.kind,
            "revision": self._seen_revision,
            "reachable": unreachable is None,
            "unreachable_for_s": None if unreachable is None else round(time.monotonic() - unreachable, 1),
            "error": self._last_error,
            "pending_revision": pending.revision if pending else None,
            "apply_error": pending.error if pending else None,
            "apply_attempts": pending.attempts if pending else 0,
            "retry_in_s": max(0.0, round(pending.retry_at - self.clock(), 1)) if pending else None,
        }

    def audit(self, limit: int = 50) -> list[dict[str, Any]]:
        return self.state.audit(limit)

    async def _snapshot(self, based_on: int | None) -> Snapshot:
        """The control state a change starts from; `ControlConflict` when the caller saw another revision."""
        try:
            snapshot = await asyncio.to_thread(self.state.read)
        except Exception as err:
            raise store_unavailable(self.state.kind, err) from err
        if based_on is not None and based_on != snapshot.revision:
            raise ControlConflict(
                f"If-Match: the control state is at revision {snapshot.revision} ({snapshot.changed_by} at "
                f"{snapshot.changed_at}), not {based_on}; nothing was changed: read GET /admin/routes and try again"
            )
        return snapshot

    @staticmethod
    def _shared_route(family: str, snapshot: Snapshot, local: TrafficSplit) -> TrafficSplit:
        """The family's route as the store has it (this worker may be a second behind), else what it serves."""
        wanted = snapshot.routes().get(family)
        return TrafficSplit(stable=wanted["stable"], weights=wanted["weights"]) if wanted else local

    # --- keeping every worker in step --------------------------------------------------------------------

    async def follow(self) -> None:
        """Runs for the worker's life: apply the shared state when it changes; optionally watch the store."""
        since_store_check = 0.0
        while True:
            try:
                await self.apply_shared_state()
                since_store_check += STATE_POLL_S
                if self.watch_store_s and since_store_check >= self.watch_store_s:
                    since_store_check = 0.0
                    await self.reload_newer_versions()
            except Exception:  # the loop must outlive any one failure; the failure is logged
                logger.exception("applying model changes failed; the current versions keep serving")
            await asyncio.sleep(STATE_POLL_S)

    def adopt_shared_state(self) -> None:
        """Before the worker serves: the routes the control store holds, so that a started or restarted replica
        serves what the deployment serves. A route that does not load leaves the configured one serving and the
        revision pending (`follow` tries it again); the store unreachable: the configured routes, said in the log
        and on /health, and `follow` applies the store's once it answers."""
        try:
            snapshot = self.state.read()
        except Exception as err:
            self._store_unreachable(err)
            return
        self._store_reachable()
        self._take_controls(snapshot)
        failures: list[str] = []
        for family, route in self._routes_to_apply(snapshot, failures):
            current = self._current(family)
            try:
                updated = self._load_route(family, route, current)
            except ReloadFailed as err:  # serve the configured route; `follow` tries the shared one again
                failures.append(err.message)
                continue
            for scorer in self._swap(family, current, updated).values():  # nothing holds them: nothing served yet
                scorer.close()
        self._settle(snapshot, failures)

    async def apply_shared_state(self) -> None:
        """Apply the store's revision when it is newer than the one applied here, unless it failed lately and its
        next try is not due yet."""
        try:
            snapshot = await asyncio.to_thread(self.state.read)
        except Exception as err:  # keep serving what was applied last; say so on /health and in the metrics
            self._store_unreachable(err)
            return
        self._store_reachable()
        if self._is_stale(snapshot):
            return
        pending = self._pending
        if pending is not None and pending.revision == snapshot.revision and self.clock() < pending.retry_at:
            return
        self._take_controls(snapshot)
        dropped: dict[str, dict[str, Any]] = {}
        async with self._lock:
            if self._is_stale(snapshot):  # a change committed here while this one waited for the lock
                return
            failures: list[str] = []
            for family, route in self._routes_to_apply(snapshot, failures):
                current = self._current(family)
                try:
                    updated = await asyncio.to_thread(self._load_route, family, route, current)
                except ReloadFailed as err:
                    failures.append(err.message)
                    continue
                dropped[family] = self._swap(family, current, updated)
            self._settle(snapshot, failures)
        for family, scorers in dropped.items():
            await self._retire_later(family, scorers)

    def _is_stale(self, snapshot: Snapshot) -> bool:
        """Equal to or older than the revision applied here: nothing new. Older than one committed here: read
        before that change (applying it would undo the change here for a second). Revisions only grow; a store
        emptied by hand needs the replicas restarted."""
        applied = -1 if self._seen_revision is None else self._seen_revision
        return snapshot.revision <= applied or snapshot.revision < self._newest_committed

    def _routes_to_apply(self, snapshot: Snapshot, failures: list[str]) -> list[tuple[str, TrafficSplit]]:
        """The routes of `snapshot` that differ from what serves here (a malformed one goes to `failures`)."""
        changed = []
        for family, wanted in snapshot.routes().items():
            versioned = self.families.get(family)
            if versioned is None:
                continue
            try:
                route = TrafficSplit(stable=wanted["stable"], weights=wanted["weights"])
            except (InferenceError, KeyError, TypeError) as err:  # a state edited by hand
                failures.append(f"{family}: the stored route {wanted!r} is not a route ({err})")
                continue
            if route != versioned.route:
                changed.append((family, route))
        return changed

    def _settle(self, snapshot: Snapshot, failures: list[str]) -> None:
        """Record `snapshot` as applied when nothing failed, else keep it pending and schedule the next try."""
        if not failures:
            if self._pending is not None:
                logger.info("revision %d applied after %d failed tries", snapshot.revision, self._pending.attempts)
            self._record(snapshot)
            return
        previous = self._pending
        attempts = previous.attempts + 1 if previous and previous.revision == snapshot.revision else 1
        delay = min(self.retry_first_s * 2 ** (attempts - 1), self.retry_max_s)
        error = "; ".join(failures)
        self._pending = PendingRevision(snapshot.revision, error, attempts, self.clock() + delay)
        logger.error(
            "revision %d of the control state not applied (try %d): %s; still serving revision %s; next try in %.0f s",
            snapshot.revision,
            attempts,
            error,
            self._seen_revision,
            delay,
        )

    async def _commit(self, change: Change, mutate: Callable[[State], State]) -> Snapshot:
        """Commit an admin change based on its revision (`ControlConflict` when another came first,
        `ControlUnavailable` when the store cannot be reached). It counts as applied here when this worker had
        applied the revision it was based on (then the change is all that differs); else `follow` applies the
        rest of it."""
        try:
            committed = await asyncio.to_thread(
                self.state.commit, change.based_on, mutate, actor=change.actor, action=change.action
            )
        except ControlConflict:
            raise
        except Exception as err:
            raise store_unavailable(self.state.kind, err) from err
        self._newest_committed = max(self._newest_committed, committed.revision)
        self._take_controls(committed)
        if self._seen_revision == change.based_on:
            self._record(committed)
        return committed

    def _record(self, snapshot: Snapshot) -> None:
        """The control state's revision this worker now serves all of."""
        if self._seen_revision is not None and snapshot.revision < self._seen_revision:
            return
        self._seen_revision = snapshot.revision
        if self._pending is not None and self._pending.revision <= snapshot.revision:
            self._pending = None
        self.metrics.gauge("inference_control_revision", snapshot.revision)

    def _take_controls(self, snapshot: Snapshot) -> None:
        """The runtime controls of a newer revision, onto every loaded scorer at once."""
        if snapshot.revision <= self._controls_revision:
            return
        self._controls_revision = snapshot.revision
        self._controls = dict(snapshot.state.get("controls", {}))
        self._apply_controls()

    def _apply_controls(self) -> None:
        for family, versioned in self.families.versions.items():
            controls = self._controls.get(family)
            if not controls:
                continue
            for scorer in versioned.scorers.values():
                if isinstance(scorer, RuntimeControls):
                    scorer.apply_control(controls)

    def _store_unreachable(self, err: Exception) -> None:
        message = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        if self._unreachable_since is None:
            self._unreachable_since = time.monotonic()
            logger.error(
                "control store (%s) unreachable: %s; keeping revision %s", self.state.kind, message, self._seen_revision
            )
        self._last_error = message
        self.metrics.gauge("inference_control_store_up", 0)

    def _store_reachable(self) -> None:
        if self._unreachable_since is not None:
            logger.info(
                "control store (%s) reachable again after %.0f s",
                self.state.kind,
                time.monotonic() - self._unreachable_since,
            )
        self._unreachable_since, self._last_error = None, None
        self.metrics.gauge("inference_control_store_up", 1)

    async def reload_newer_versions(self) -> None:
        for family, versioned in list(self.families.versions.items()):
            newest = max(await asyncio.to_thread(self.loader.versions, family), key=semver_key, default=None)
            if newest and semver_key(newest) > semver_key(versioned.route.stable):
                logger.info("%s: %s is in the store, newer than %s; reloading", family, newest, versioned.route.stable)
                try:
                    await self.reload(family, newest, actor="store-watch")
                except (ReloadFailed, ControlConflict) as err:
                    logger.error("%s: %s", family, err.message)

    async def close(self) -> None:
        for task in self._retiring:
            task.cancel()

    # --- the one way a family changes --------------------------------------------------------------------

    def _current(self, family: str) -> Any:
        versioned = self.families.get(family)
        if versioned is None:
            raise UnknownFamily(
                f"family: {family[:64]!r} is not served here; served: {', '.join(self.families.versions)}"
            )
        return versioned

    def _load_route(self, family: str, route: TrafficSplit, current: VersionedFamily[Any]) -> VersionedFamily[Any]:
        """The family under `route`, the versions it lacks loaded and validated (blocking: call on a thread once
        the worker serves); `ReloadFailed` with the reason when one does not."""
        try:
            return self.loader.build(family, route, current.scorers)
        except Exception as err:  # anything that stops the new version serving stops the change
            reason = err.message if isinstance(err, InferenceError) else f"{type(err).__name__}: {err}"
            raise ReloadFailed(
                f"{family} {route.to_dict()}: {reason}; still serving {current.route.to_dict()}"
            ) from err

    async def _change(self, family: str, route: TrafficSplit, change: Change) -> int:
        """Load and validate `route`, commit it to the control store as `change`, then swap it in; the revision
        committed."""
        async with self._lock:
            current = self._current(family)
            updated = await asyncio.to_thread(self._load_route, family, route, current)
            try:
                committed = await self._commit(change, _with_route(family, route))
            except InferenceError:  # refused or unreachable: nothing changes here either
                for version, scorer in updated.scorers.items():
                    if current.scorers.get(version) is not scorer:
                        scorer.close()
                raise
            dropped = self._swap(family, current, updated)
        await self._retire_later(family, dropped)
        return committed.revision

    def _swap(self, family: str, current: VersionedFamily[Any], updated: VersionedFamily[Any]) -> dict[str, Any]:
        """Serve `updated` from now on (new requests see it; those in flight finish on `current`); the scorers
        it dropped."""
        self.families.versions[family] = updated
        self._apply_controls()  # a version loaded now takes the deployment's controls, not its defaults
        dropped = {version: scorer for version, scorer in current.scorers.items() if version not in updated.scorers}
        self.loader.report_route(family, updated.route, dropped=list(dropped))
        logger.info("%s now %s (dropped %s)", family, updated.route.to_dict(), sorted(dropped) or "nothing")
        return dropped

    async def _retire_later(self, family: str, dropped: dict[str, Any]) -> None:
        """Drop the cached answers of versions no longer routed, and close them once requests holding them are
        done."""
        for version, scorer in dropped.items():
            for model in scorer.model_names():
                try:
                    await self.cache.invalidate_version(family, model, version)
                except Exception as err:  # the cache is an optimisation; old entries expire anyway
                    logger.warning("could not drop cached answers of %s %s: %s", model, version, err)
        if dropped:
            task = asyncio.get_running_loop().create_task(self._retire(list(dropped.values())))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def _retire(self, scorers: list[Any]) -> None:
        await asyncio.sleep(self.retire_after_s)  # requests still holding them finish first
        for scorer in scorers:
            scorer.close()


def _with_route(family: str, route: TrafficSplit) -> Any:
    def change(state: State) -> State:
        return {**state, "routes": {**state.get("routes", {}), family: route.to_dict()}}

    return change


def _control_of(scorer: Any, family: str, name: str) -> dict[str, Any]:
    if not isinstance(scorer, RuntimeControls):
        raise InvalidRequest(f"control: {family} has no runtime controls")
    return dict(scorer.control(name))


def _stored_control(state: State, family: str, name: str) -> dict[str, Any]:
    return dict(state.get("controls", {}).get(family, {}).get(name, {}))
