"""The intent front's client of the ensemble's own service (`EnsembleService` over BentoML's dependency proxy): the
call with its budget left to the caller, and every way it can fail told apart as a fallback reason. service.py
makes one per worker from `bentoml.depends`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from inference.families.intent.apart import EnsembleAbsent, Vote

ENDPOINT = "classify"  # the ensemble service's API (service.py, IntentEnsemble.classify)
# Labelled feedback's calls run in a thread and wait at most this long for the service (the items are then
# scored by classic only).
BLOCKING_TIMEOUT_S = 10.0


class BentoEnsemble:
    """`dependency`: what `bentoml.depends` resolved to, BentoML's proxy of the service (another process or
    deployment), or the service's own instance when BentoML runs it in this process."""

    def __init__(self, dependency: Any) -> None:
        self._dependency = dependency
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The worker's event loop, on which calls from other threads are made (BentoML's proxy belongs to it)."""
        self._loop = loop

    async def classify(self, texts: Sequence[str], version: str) -> list[Vote]:
        self._loop = self._loop or asyncio.get_running_loop()
        to_async = getattr(self._dependency, "to_async", None)
        try:
            if to_async is not None and hasattr(to_async, "call"):
                answered = await to_async.call(ENDPOINT, texts=list(texts), version=version)
            else:
                answered = await self._dependency.classify(texts=list(texts), version=version)
        except (asyncio.CancelledError, TimeoutError):
            raise
        except Exception as err:
            raise absent(err) from err
        return votes(answered)

    def classify_blocking(self, texts: Sequence[str], version: str) -> list[Vote]:
        if self._loop is None:
            raise EnsembleAbsent("ensemble_unreachable", "the ensemble's service has not been called from this worker")
        future = asyncio.run_coroutine_threadsafe(self.classify(texts, version), self._loop)
        try:
            return future.result(BLOCKING_TIMEOUT_S)
        except FutureTimeout as err:
            future.cancel()
            raise EnsembleAbsent("ensemble_timeout", f"no answer within {BLOCKING_TIMEOUT_S:g} s") from err


def absent(err: Exception) -> EnsembleAbsent:
    """The fallback reason of a failed call: no connection (at zero replicas, stopped, not resolvable), a refusal
    (starting, overloaded: 503 or 429), or anything else the service answered."""
    import aiohttp
    from bentoml.exceptions import BentoMLException

    detail = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    if isinstance(err, aiohttp.ClientConnectionError | ConnectionError | OSError):
        return EnsembleAbsent("ensemble_unreachable", detail)
    code = getattr(err, "error_code", None) if isinstance(err, BentoMLException) else None
    if code is not None and int(code) in (429, 503):
        return EnsembleAbsent("ensemble_unavailable", detail)
    return EnsembleAbsent("ensemble_error", detail)


def votes(answered: object) -> list[Vote]:
    """The service's answer as (intent, probability) pairs: JSON gives lists, pickle tuples."""
    try:
        return [(str(intent), float(probability)) for intent, probability in answered]  # type: ignore[attr-defined]
    except (TypeError, ValueError) as err:
        raise EnsembleAbsent("ensemble_error", f"unusable answer: {type(err).__name__}: {err}") from err
