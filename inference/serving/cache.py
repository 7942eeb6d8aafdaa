"""The result cache: one interface, an in-process LRU with TTL (`memory://`, the default) or Redis (`redis://`);
`none://` turns it off.

Keys name the family, the model, the model **version** and a hash of the normalised input, so a new model
version or new input never meets an old answer. Entries of a student (skills) are also indexed by student id,
so `invalidate_student` removes them all.

The cache is an optimisation, never a dependency: a Redis error or timeout counts as a miss (and an error),
is logged at most once per interval, and Redis is left alone for a short cool-down before it is tried again,
so a dead Redis costs requests nothing after the first failure and the cache recovers by itself. A busy pool is
not a failing Redis: a call waits up to the timeout for a free connection, and one that gets none is a miss for
that call alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast
from urllib.parse import urlparse

from cachetools import TTLCache

from inference.errors import CacheUnavailable
from inference.logs import LOGGER_NAME, EveryInterval

logger = logging.getLogger(LOGGER_NAME)

PREFIX = "inference"


def input_hash(payload: Any) -> str:
    """SHA-256 of the canonical JSON of `payload` (sorted keys, no spaces): equal inputs, equal hashes."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class CacheKey:
    family: str
    model: str
    version: str
    digest: str
    student_id: str | None = None

    def __str__(self) -> str:
        return f"{PREFIX}:{self.family}:{self.model}:{self.version}:{self.digest}"


def student_index_key(student_id: str) -> str:
    return f"{PREFIX}:student:{student_id}"


class ResultCache(Protocol):
    """Values are bytes (the serialised answer); `get_many` keeps the order of `keys`, None for a miss."""

    enabled: bool  # False only for `none://`: callers may skip building keys

    async def get_many(self, keys: Sequence[CacheKey]) -> list[bytes | None]: ...

    async def set_many(self, entries: Mapping[CacheKey, bytes]) -> None: ...

    async def invalidate_student(self, student_id: str) -> int: ...

    async def invalidate_version(self, family: str, model: str, version: str) -> int: ...

    async def close(self) -> None: ...


class CacheStats(Protocol):
    def cache(self, family: str, version: str, outcome: str, count: int = 1) -> None: ...


class _NoStats:
    def cache(self, family: str, version: str, outcome: str, count: int = 1) -> None:
        pass


class NoCache:
    """`none://`: every lookup misses and nothing is kept (for benchmarks and debugging)."""

    enabled = False

    async def get_many(self, keys: Sequence[CacheKey]) -> list[bytes | None]:
        return [None] * len(keys)

    async def set_many(self, entries: Mapping[CacheKey, bytes]) -> None:
        pass

    async def invalidate_student(self, student_id: str) -> int:
        return 0

    async def invalidate_version(self, family: str, model: str, version: str) -> int:
        return 0

    async def close(self) -> None:
        pass


class _EvictionAwareTTLCache(TTLCache[str, bytes]):
    """A TTLCache that reports every key it lets go of: evicted (LRU), expired, deleted or popped.

    cachetools drops entries in two places, `__delitem__` (eviction by `popitem`, `pop`, `del`) and `expire`
    (which bypasses `__delitem__`); both are hooked so that an index beside the cache can never outgrow it.
    """

    def __init__(self, maxsize: int, ttl: float, *, on_drop: Callable[[str], None], timer: Callable[[], float]):
        super().__init__(maxsize=maxsize, ttl=ttl, timer=timer)
        self._on_drop = on_drop

    def __delitem__(self, key: str) -> None:
        try:
            super().__delitem__(key)  # raises KeyError for an expired key, after removing it
        finally:
            self._on_drop(key)

    def expire(self, time: float | None = None) -> list[tuple[str, bytes]]:
        expired = super().expire(time)
        for key, _ in expired:
            self._on_drop(key)
        return expired


class MemoryCache:
    """An LRU of at most `max_entries` answers, each living `ttl_s`; per worker process.

    The per-student index holds only keys the LRU still holds: an entry's way out (eviction, expiry,
    invalidation) takes its index entry with it, so memory is bounded by `max_entries` however many students
    pass through a worker.
    """

    enabled = True

    def __init__(self, *, ttl_s: float, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic):
        self._entries = _EvictionAwareTTLCache(max_entries, ttl_s, on_drop=self._forget, timer=clock)
        self._students: dict[str, set[str]] = {}  # student id -> keys of their cached answers
        self._student_of: dict[str, str] = {}  # key -> student id, to find the index entry of a dropped key
        self._lock = threading.Lock()

    async def get_many(self, keys: Sequence[CacheKey]) -> list[bytes | None]:
        with self._lock:
            return [self._entries.get(str(key)) for key in keys]

    async def set_many(self, entries: Mapping[CacheKey, bytes]) -> None:
        with self._lock:
            for key, value in entries.items():
                name = str(key)
                self._entries[name] = value
                if key.student_id is not None:
                    self._student_of[name] = key.student_id
                    self._students.setdefault(key.student_id, set()).add(name)

    async def invalidate_student(self, student_id: str) -> int:
        with self._lock:
            keys = list(self._students.get(student_id, ()))
            return sum(self._entries.pop(key, None) is not None for key in keys)

    async def invalidate_version(self, family: str, model: str, version: str) -> int:
        prefix = f"{PREFIX}:{family}:{model}:{version}:"
        with self._lock:
            doomed = [key for key in self._entries if key.startswith(prefix)]
            for key in doomed:
                self._entries.pop(key, None)
            return len(doomed)

    def sizes(self) -> tuple[int, int]:
        """(entries held, students indexed): the index never outgrows the entries."""
        with self._lock:
            return len(self._entries), len(self._students)

    async def close(self) -> None:
        pass

    def _forget(self, key: str) -> None:
        """Called by the LRU for every key it drops, under `self._lock` (all LRU calls are made holding it)."""
        student_id = self._student_of.pop(key, None)
        if student_id is None:
            return
        keys = self._students.get(student_id)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._students[student_id]


MAX_CONNECTIONS = 64  # per worker; beyond, a call waits for a free one (up to the cache timeout)


class RedisCache:
    """Redis behind the same interface: pooled connections, short timeouts, errors degrade to misses."""

    enabled = True

    def __init__(
        self,
        url: str,
        *,
        ttl_s: float,
        timeout_s: float = 0.05,
        cooldown_s: float = 1.0,
        log_every_s: float = 30.0,
        max_connections: int = MAX_CONNECTIONS,
        stats: CacheStats | None = None,
    ) -> None:
        import redis.asyncio as redis

        self.ttl_ms = int(ttl_s * 1000)
        self.cooldown_s = cooldown_s
        # Blocking: past `max_connections` calls at once, a plain pool raises at once, which would put the cache
        # to rest exactly under load; this one makes the call wait for a connection, up to the cache timeout.
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            health_check_interval=30,
        )
        self._client = redis.Redis.from_pool(pool)
        self._stats = stats or _NoStats()
        self._log = EveryInterval(log_every_s)
        self._busy_log = EveryInterval(log_every_s)
        self._resting_until = 0.0  # after an error, Redis is not asked again until then

    async def get_many(self, keys: Sequence[CacheKey]) -> list[bytes | None]:
        if not keys or self._resting():
            return [None] * len(keys)
        try:
            values = await self._client.mget([str(key) for key in keys])
        except Exception as err:  # any Redis trouble: answer without the cache
            self._failed("get", keys[0], err)
            return [None] * len(keys)
        # redis-py types every reply as bytes | str, whether or not the client decodes; this one does not (no
        # decode_responses), so each value is bytes, or None for a miss.
        return cast("list[bytes | None]", list(values))

    async def set_many(self, entries: Mapping[CacheKey, bytes]) -> None:
        if not entries or self._resting():
            return
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for key, value in entries.items():
                    pipe.set(str(key), value, px=self.ttl_ms)
                    if key.student_id is not None:
                        index = student_index_key(key.student_id)
                        pipe.sadd(index, str(key))
                        pipe.pexpire(index, self.ttl_ms)
                await pipe.execute()
        except Exception as err:
            self._failed("set", next(iter(entries)), err)

    async def invalidate_student(self, student_id: str) -> int:
        index = student_index_key(student_id)
        try:
            keys = await self._client.smembers(index)
            deleted = await self._client.delete(*keys) if keys else 0
            await self._client.delete(index)
        except Exception as err:  # the caller asked for a deletion: say it did not happen
            raise CacheUnavailable(
                f"student {student_id}'s cached answers were not dropped: {type(err).__name__}: {err}; retry"
            ) from err
        return int(deleted)

    async def invalidate_version(self, family: str, model: str, version: str) -> int:
        deleted = 0
        async for key in self._client.scan_iter(match=f"{PREFIX}:{family}:{model}:{version}:*", count=1000):
            deleted += int(await self._client.unlink(key))
        return deleted

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except Exception:
            return False

    async def close(self) -> None:
        await self._client.aclose()

    def _resting(self) -> bool:
        return time.monotonic() < self._resting_until

    def _failed(self, operation: str, key: CacheKey, error: Exception) -> None:
        if _no_free_connection(error):  # Redis is fine, this worker's connections are all in use: this call misses
            held_back = self._busy_log.allow()
            if held_back is not None:
                logger.warning(
                    "cache %s got no free Redis connection within the cache timeout and answered without the cache "
                    "(%d more since the last such line); Redis is still used",
                    operation,
                    held_back,
                )
            return
        self._resting_until = time.monotonic() + self.cooldown_s
        self._stats.cache(key.family, key.version, "error")
        held_back = self._log.allow()
        if held_back is not None:
            logger.warning(
                "cache %s failed, answering without the cache for %.1f s: %s: %s (%d more failures since the last "
                "such line)",
                operation,
                self.cooldown_s,
                type(error).__name__,
                error,
                held_back,
            )


def _no_free_connection(error: Exception) -> bool:
    """The blocking pool's wait for a free connection timed out (redis-py raises a ConnectionError for it, its cause
    the wait's TimeoutError); a connection that failed or timed out talking to Redis is something else."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    return (
        isinstance(error, RedisConnectionError)
        and isinstance(error.__cause__, TimeoutError)
        and "No connection available" in str(error)
    )


def cache_from_url(
    url: str, *, ttl_s: float, timeout_s: float, max_entries: int = 100_000, stats: CacheStats | None = None
) -> ResultCache:
    scheme = urlparse(url).scheme
    if scheme == "none":
        return NoCache()
    if scheme == "memory":
        return MemoryCache(ttl_s=ttl_s, max_entries=max_entries)
    if scheme in ("redis", "rediss", "unix"):
        return RedisCache(url, ttl_s=ttl_s, timeout_s=timeout_s, stats=stats)
    raise ValueError(f"unsupported cache URL {url!r}; expected memory://, redis://host:port/db, rediss://, none://")
