"""Changing what a running server serves, without a restart: weights, rollback, hot reload of a newer version.

Every change follows the same steps: load what the new route needs beside what serves now (on a thread, so
requests keep flowing), validate it, swap the family's `VersionedFamily` in one assignment, and close what
the new route dropped once the requests holding it are done. A change that fails to load or validate leaves
the old version serving and raises `ReloadFailed` with the reason.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from inference.errors import ArtifactError, InferenceError, InvalidRequest
from inference.families.loader import Families, FamilyLoader
from inference.logs import LOGGER_NAME
from inference.serving.cache import ResultCache
from inference.serving.state import SharedState
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


class ModelManager:
    def __init__(
        self,
        families: Families,
        loader: FamilyLoader,
        state: SharedState,
        cache: ResultCache,
        *,
        retire_after_s: float = 10.0,
        watch_store_s: float = 0.0,
    ) -> None:
        self.families = families
        self.loader = loader
        self.state = state
        self.cache = cache
        self.retire_after_s = retire_after_s
        self.watch_store_s = watch_store_s
        self._lock = asyncio.Lock()
        self._seen_stamp: tuple[int, int] | None = None
        self._retiring: set[asyncio.Task[None]] = set()

    # --- what the admin API calls (then every worker follows through the shared state) ------------------

    def routes(self) -> dict[str, Any]:
        return {
            family: {**versioned.route.to_dict(), "loaded": sorted(versioned.scorers)}
            for family, versioned in self.families.versions.items()
        }

    async def set_weights(self, family: str, weights: dict[str, float]) -> dict[str, Any]:
        current = self._current(family)
        unknown = sorted(set(weights) - set(await asyncio.to_thread(self.loader.versions, family)))
        if unknown:
            raise InvalidRequest(f"weights: versions not in the model store for {family}: {unknown}")
        route = Route(stable=current.route.stable, weights={version: float(w) for version, w in weights.items()})
        await self._change(family, route, publish=True)
        return route.to_dict()

    async def rollback(self, family: str) -> dict[str, Any]:
        route = self._current(family).route.rolled_back()
        await self._change(family, route, publish=True)
        return route.to_dict()

    async def reload(self, family: str, version: str) -> dict[str, Any]:
        """Make `version` (or `latest`) the family's stable version, serving all its traffic."""
        self._current(family)
        try:
            resolved = await asyncio.to_thread(self.loader.resolve, family, version)
        except ArtifactError as err:
            raise ReloadFailed(f"{family} {version}: {err.message}; still serving the previous version") from err
        route = Route(stable=resolved, weights={resolved: 100.0})
        await self._change(family, route, publish=True)
        return route.to_dict()

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

    async def apply_shared_state(self) -> None:
        stamp = self.state.stamp()
        if stamp is None or stamp == self._seen_stamp:
            return
        self._seen_stamp = stamp
        for family, wanted in self.state.routes().items():
            versioned = self.families.get(family)
            if versioned is None:
                continue
            route = Route(stable=wanted["stable"], weights=wanted["weights"])
            if route != versioned.route:
                try:
                    await self._change(family, route, publish=False)
                except ReloadFailed as err:
                    logger.error("%s: could not follow the shared route %s: %s", family, route.to_dict(), err.message)

    async def reload_newer_versions(self) -> None:
        for family, versioned in list(self.families.versions.items()):
            newest = max(await asyncio.to_thread(self.loader.versions, family), key=semver_key, default=None)
            if newest and semver_key(newest) > semver_key(versioned.route.stable):
                logger.info("%s: %s is in the store, newer than %s; reloading", family, newest, versioned.route.stable)
                try:
                    await self.reload(family, newest)
                except ReloadFailed as err:
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

    async def _change(self, family: str, route: Route, *, publish: bool) -> None:
        async with self._lock:
            current = self._current(family)
            try:
                updated = await asyncio.to_thread(self.loader.build, family, route, current.scorers)
            except Exception as err:  # anything that stops the new version serving stops the change
                reason = err.message if isinstance(err, InferenceError) else f"{type(err).__name__}: {err}"
                raise ReloadFailed(
                    f"{family} {route.to_dict()}: {reason}; still serving {current.route.to_dict()}"
                ) from err
            self.families.versions[family] = updated  # the swap: new requests see the new family from here
            if publish:
                self.state.set_route(family, route.to_dict())
                self._seen_stamp = self.state.stamp()
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
