"""Changing what a running deployment serves, without a restart: weights, rollback, hot reload of a version.

Every change follows the same steps: read the control state's revision, load what the new route needs beside
what serves now (on a thread, so requests keep flowing), validate it, commit the route to the control store
based on that revision (refused when another change came first: `ControlConflict`), swap the family's
`VersionedFamily` in one assignment, and close what the new route dropped once the requests holding it are done.
A change that fails to load or validate leaves the old version serving and raises `ReloadFailed` with the reason.
Every worker of every replica follows the store (`follow`): it applies each newer revision within about a second,
and when the store cannot be read it keeps what it applied last and says so (`control_status`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from inference.errors import ArtifactError, InferenceError, InvalidRequest
from inference.families.loader import Families, FamilyLoader
from inference.logs import LOGGER_NAME
from inference.monitoring.metrics import Metrics, NoMetrics
from inference.serving.cache import ResultCache
from inference.serving.control import ControlConflict, ControlStore, ControlUnavailable, Snapshot, State
from inference.serving.versions import Route
from inference.store.registry import semver_key

logger = logging.getLogger(LOGGER_NAME)

STATE_POLL_S = 1.0


class ReloadFailed(InferenceError):
    """The new version did not load or validate; the old one keeps serving."""

    code = "reload_failed"
    status = 409


class UnknownFamily(InvalidRequest):
    """An admin call names a family this server does not serve."""

    code = "unknown_family"


@dataclass(frozen=True)
class Change:
    """An admin change to commit: the revision it was based on, which token made it, what it does."""

    based_on: int
    actor: str
    action: str


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
    ) -> None:
        self.families = families
        self.loader = loader
        self.state = state
        self.cache = cache
        self.retire_after_s = retire_after_s
        self.watch_store_s = watch_store_s
        self.metrics = metrics or NoMetrics()
        self._lock = asyncio.Lock()
        self._seen_revision: int | None = None
        self._state: State = {}  # the control state of `_seen_revision`
        self._unreachable_since: float | None = None  # monotonic; None while the store answers
        self._last_error: str | None = None
        self._retiring: set[asyncio.Task[None]] = set()

    # --- what the admin API calls (then every worker follows through the shared state) ------------------

    def routes(self) -> dict[str, Any]:
        return {
            family: {**versioned.route.to_dict(), "loaded": sorted(versioned.scorers)}
            for family, versioned in self.families.versions.items()
        }

    async def set_weights(
        self, family: str, weights: dict[str, float], *, actor: str = "admin", based_on: int | None = None
    ) -> dict[str, Any]:
        current = self._current(family)
        snapshot = await self._snapshot(based_on)
        stored = set(await asyncio.to_thread(self.loader.versions, family))
        for version in sorted(set(weights) - stored):  # a version not baked in: from the shared model source
            with contextlib.suppress(ArtifactError):
                await asyncio.to_thread(self.loader.pull, family, version)
        unknown = sorted(set(weights) - set(await asyncio.to_thread(self.loader.versions, family)))
        if unknown:
            raise InvalidRequest(
                f"weights: versions neither in the model store nor in the model source for {family}: {unknown}"
            )
        stable = self._shared_route(family, snapshot, current.route).stable
        route = Route(stable=stable, weights={version: float(w) for version, w in weights.items()})
        await self._change(family, route, Change(snapshot.revision, actor, f"{family}: weights {route.to_dict()}"))
        return route.to_dict()

    async def rollback(self, family: str, *, actor: str = "admin", based_on: int | None = None) -> dict[str, Any]:
        current = self._current(family)
        snapshot = await self._snapshot(based_on)
        route = self._shared_route(family, snapshot, current.route).rolled_back()
        await self._change(family, route, Change(snapshot.revision, actor, f"{family}: rollback to {route.stable}"))
        return route.to_dict()

    async def reload(
        self, family: str, version: str, *, actor: str = "admin", based_on: int | None = None
    ) -> dict[str, Any]:
        """Make `version` (or `latest`) the family's stable version, serving all its traffic."""
        self._current(family)
        snapshot = await self._snapshot(based_on)
        try:
            resolved = await asyncio.to_thread(self.loader.resolve, family, version)
        except ArtifactError as err:
            raise ReloadFailed(f"{family} {version}: {err.message}; still serving the previous version") from err
        route = Route(stable=resolved, weights={resolved: 100.0})
        await self._change(family, route, Change(snapshot.revision, actor, f"{family}: reload {resolved}"))
        return route.to_dict()

    async def set_control(
        self, family: str, name: str, changes: dict[str, Any], *, actor: str = "admin", based_on: int | None = None
    ) -> dict[str, Any]:
        """Change a family's runtime control (intent: `ensemble`, the dual-mode flag) for every replica: the
        fields given replace the current ones."""
        versioned = self._current(family)
        current = _control_of(versioned.scorers[versioned.route.stable], family, name)
        snapshot = await self._snapshot(based_on)
        merged = {**current, **_stored_control(snapshot.state, family, name), **changes}

        def change(state: State) -> State:
            controls = state.get("controls", {})
            family_controls = {**controls.get(family, {}), name: merged}
            return {**state, "controls": {**controls, family: family_controls}}

        async with self._lock:
            await self._commit(Change(snapshot.revision, actor, f"{family}: {name} {merged}"), change)
            self._apply_controls()
        logger.info("%s %s now %s", family, name, merged)
        return merged

    def controls(self) -> dict[str, dict[str, Any]]:
        """Each family's runtime controls as its stable version applies them."""
        found: dict[str, dict[str, Any]] = {}
        for family, versioned in self.families.versions.items():
            scorer = versioned.scorers[versioned.route.stable]
            if hasattr(scorer, "controls"):
                found[family] = scorer.controls()
        return found

    def _apply_controls(self) -> None:
        """The control state's runtime controls onto every loaded scorer that has them."""
        for family, versioned in self.families.versions.items():
            controls = self._state.get("controls", {}).get(family)
            if not controls:
                continue
            for scorer in versioned.scorers.values():
                if hasattr(scorer, "apply_control"):
                    scorer.apply_control(controls)

    def revision(self) -> int | None:
        """The control state's revision this worker applied last (None: none read yet)."""
        return self._seen_revision

    def control_status(self) -> dict[str, Any]:
        """Where the control state lives, the revision applied, and whether the store answered at the last look."""
        unreachable = self._unreachable_since
        return {
            "store": self.state.kind,
            "revision": self._seen_revision,
            "reachable": unreachable is None,
            "unreachable_for_s": None if unreachable is None else round(time.monotonic() - unreachable, 1),
            "error": self._last_error,
        }

    def audit(self, limit: int = 50) -> list[dict[str, Any]]:
        return self.state.audit(limit)

    async def _snapshot(self, based_on: int | None) -> Snapshot:
        """The control state a change starts from; `ControlConflict` when the caller saw another revision."""
        try:
            snapshot = await asyncio.to_thread(self.state.read)
        except Exception as err:
            raise _unavailable(self.state.kind, err) from err
        if based_on is not None and based_on != snapshot.revision:
            raise ControlConflict(
                f"If-Match: the control state is at revision {snapshot.revision} ({snapshot.changed_by} at "
                f"{snapshot.changed_at}), not {based_on}; nothing was changed: read GET /admin/routes and try again"
            )
        return snapshot

    @staticmethod
    def _shared_route(family: str, snapshot: Snapshot, local: Route) -> Route:
        """The family's route as the store has it (this worker may be a second behind), else what it serves."""
        wanted = snapshot.routes().get(family)
        return Route(stable=wanted["stable"], weights=wanted["weights"]) if wanted else local

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
        serves what the deployment serves. The store unreachable: the configured routes, said in the log and on
        /health, and `follow` applies the store's once it answers."""
        try:
            snapshot = self.state.read()
        except Exception as err:
            self._store_unreachable(err)
            return
        self._store_reachable()
        self._record(snapshot)
        self._apply_controls()
        for family, wanted in snapshot.routes().items():
            versioned = self.families.get(family)
            route = Route(stable=wanted["stable"], weights=wanted["weights"])
            if versioned is None or route == versioned.route:
                continue
            try:
                updated = self.loader.build(family, route, versioned.scorers)
            except Exception as err:  # serve the configured route; `follow` tries the shared one again
                logger.error("%s: could not take on the shared route %s: %s", family, route.to_dict(), err)
                self._seen_revision = None
                continue
            self.families.versions[family] = updated
            self._apply_controls()
            dropped = [version for version in versioned.scorers if version not in updated.scorers]
            for version in dropped:  # nothing holds them yet: the worker has not served
                versioned.scorers[version].close()
            self.loader.report_route(family, route, dropped=dropped)
            logger.info("%s: took on the shared route %s (revision %d)", family, route.to_dict(), snapshot.revision)

    async def apply_shared_state(self) -> None:
        try:
            snapshot = await asyncio.to_thread(self.state.read)
        except Exception as err:  # keep serving what was applied last; say so on /health and in the metrics
            self._store_unreachable(err)
            return
        self._store_reachable()
        # Equal: nothing new. Older: read before a change this worker committed meanwhile (applying it would undo
        # that change here for a second). Revisions only grow; a store emptied by hand needs the replicas restarted.
        if self._seen_revision is not None and snapshot.revision <= self._seen_revision:
            return
        self._record(snapshot)
        self._apply_controls()
        for family, wanted in snapshot.routes().items():
            versioned = self.families.get(family)
            if versioned is None:
                continue
            route = Route(stable=wanted["stable"], weights=wanted["weights"])
            if route != versioned.route:
                try:
                    await self._change(family, route, None)
                except ReloadFailed as err:
                    logger.error("%s: could not follow the shared route %s: %s", family, route.to_dict(), err.message)

    async def _commit(self, change: Change, mutate: Callable[[State], State]) -> None:
        """Commit an admin change based on its revision (`ControlConflict` when another came first,
        `ControlUnavailable` when the store cannot be reached) and record it as applied here."""
        try:
            committed = await asyncio.to_thread(
                self.state.commit, change.based_on, mutate, actor=change.actor, action=change.action
            )
        except ControlConflict:
            raise
        except Exception as err:
            raise _unavailable(self.state.kind, err) from err
        self._record(committed)

    def _record(self, snapshot: Snapshot) -> None:
        """The control state this worker applies from now on."""
        self._seen_revision, self._state = snapshot.revision, snapshot.state
        self.metrics.gauge("inference_control_revision", snapshot.revision)

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
            raise UnknownFamily(f"family: {family!r} is not served here; served: {', '.join(self.families.versions)}")
        return versioned

    async def _change(self, family: str, route: Route, change: Change | None) -> None:
        """Load and validate `route`, commit it to the control store when it is an admin `change` (the shared
        state's own routes are applied with None), then swap it in."""
        async with self._lock:
            current = self._current(family)
            try:
                updated = await asyncio.to_thread(self.loader.build, family, route, current.scorers)
            except Exception as err:  # anything that stops the new version serving stops the change
                reason = err.message if isinstance(err, InferenceError) else f"{type(err).__name__}: {err}"
                raise ReloadFailed(
                    f"{family} {route.to_dict()}: {reason}; still serving {current.route.to_dict()}"
                ) from err
            if change is not None:
                try:
                    await self._commit(change, _with_route(family, route))
                except InferenceError:  # refused or unreachable: nothing changes here either
                    for version, scorer in updated.scorers.items():
                        if current.scorers.get(version) is not scorer:
                            scorer.close()
                    raise
            self.families.versions[family] = updated  # the swap: new requests see the new family from here
            self._apply_controls()  # a version loaded now takes the deployment's controls, not its defaults
            dropped = {version: scorer for version, scorer in current.scorers.items() if version not in updated.scorers}
            self.loader.report_route(family, route, dropped=list(dropped))
            logger.info("%s now %s (dropped %s)", family, route.to_dict(), sorted(dropped) or "nothing")
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


def _with_route(family: str, route: Route) -> Any:
    def change(state: State) -> State:
        return {**state, "routes": {**state.get("routes", {}), family: route.to_dict()}}

    return change


def _unavailable(kind: str, err: Exception) -> ControlUnavailable:
    first_line = str(err).splitlines()[0] if str(err) else ""
    return ControlUnavailable(
        f"the control store ({kind}) could not be reached ({type(err).__name__}: {first_line}); nothing was changed"
    )


def _control_of(scorer: Any, family: str, name: str) -> dict[str, Any]:
    if not hasattr(scorer, "control"):
        raise InvalidRequest(f"control: {family} has no runtime controls")
    return dict(scorer.control(name))


def _stored_control(state: State, family: str, name: str) -> dict[str, Any]:
    return dict(state.get("controls", {}).get(family, {}).get(name, {}))
