"""The result cache: keys carry the model version and the normalised input; memory and Redis behave alike;
Redis trouble degrades to misses, counted and logged once per interval, and the cache recovers by itself."""

import asyncio
import logging
import socket
import time

import pytest

from inference.families.skills.scorer import SkillsScorer
from inference.schemas import SkillInferenceRequest
from inference.serving.cache import CacheKey, MemoryCache, NoCache, RedisCache, cache_from_url, input_hash


def key(digest="d1", version="v1.0.0", student="s-1", model="skill-leadership"):
    return CacheKey("skills", model, version, digest, student_id=student)


class CountingStats:
    def __init__(self):
        self.calls = []

    def cache(self, family, version, outcome, count=1):
        self.calls.append((family, version, outcome, count))


def run(coroutine):
    return asyncio.run(coroutine)


def skills_cache_key(request, version):
    scorer = SkillsScorer({}, version=version)  # no model loaded: the key names the family's version
    try:
        return scorer.cache_key(request)
    finally:
        scorer.close()


def test_equal_inputs_hash_equal_and_integers_equal_floats_in_skills_keys():
    assert input_hash({"b": 1, "a": [1, 2]}) == input_hash({"a": [1, 2], "b": 1})
    first = SkillInferenceRequest(student_id="s", skill="leadership", features={"leadership_roles_taken": 3})
    again = SkillInferenceRequest(student_id="s", skill="leadership", features={"leadership_roles_taken": 3.0})
    changed = SkillInferenceRequest(student_id="s", skill="leadership", features={"leadership_roles_taken": 4})
    other = SkillInferenceRequest(student_id="t", skill="leadership", features={"leadership_roles_taken": 3})
    assert skills_cache_key(first, "v1.0.0") == skills_cache_key(again, "v1.0.0")
    assert skills_cache_key(first, "v1.0.0") != skills_cache_key(changed, "v1.0.0")
    assert skills_cache_key(first, "v1.0.0") != skills_cache_key(other, "v1.0.0")
    assert str(skills_cache_key(first, "v1.1.0")) != str(skills_cache_key(first, "v1.0.0"))
    assert str(skills_cache_key(first, "v1.0.0")).startswith("inference:skills:skill-leadership:v1.0.0:")


class ManualClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_memory_cache_keeps_expires_and_forgets_by_student_and_version():
    clock = ManualClock()
    cache = MemoryCache(ttl_s=30, max_entries=100, clock=clock)
    run(cache.set_many({key("a"): b"1", key("b", student="s-2"): b"2", key("c", version="v2"): b"3"}))
    assert run(cache.get_many([key("a"), key("b", student="s-2"), key("zz")])) == [b"1", b"2", None]
    assert run(cache.invalidate_student("s-1")) == 2  # "a" and the v2 entry "c"
    assert run(cache.get_many([key("a"), key("c", version="v2"), key("b", student="s-2")])) == [None, None, b"2"]
    run(cache.set_many({key("d"): b"4", key("e", version="v9"): b"5"}))
    assert run(cache.invalidate_version("skills", "skill-leadership", "v9")) == 1
    assert run(cache.get_many([key("d"), key("e", version="v9")])) == [b"4", None]
    clock.now += 29.9
    assert run(cache.get_many([key("d")])) == [b"4"]
    clock.now += 0.2
    assert run(cache.get_many([key("d")])) == [None]


def test_memory_cache_index_stays_within_the_bound_over_100_000_distinct_students():
    cache = MemoryCache(ttl_s=3600, max_entries=10)
    for start in range(0, 100_000, 1000):
        run(cache.set_many({key(f"d{n}", student=f"s-{n}"): b"x" for n in range(start, start + 1000)}))
        entries, students = cache.sizes()
        assert entries <= 10 and students <= 10, (start, entries, students)
    assert cache.sizes() == (10, 10)
    # the ten left are the most recent ones, and their index still finds them
    assert run(cache.invalidate_student("s-99999")) == 1
    assert run(cache.invalidate_student("s-0")) == 0
    assert cache.sizes() == (9, 9)


def test_memory_cache_index_forgets_expired_and_invalidated_entries():
    clock = ManualClock()
    cache = MemoryCache(ttl_s=10, max_entries=1000, clock=clock)
    run(cache.set_many({key(f"d{n}", student=f"s-{n % 50}"): b"x" for n in range(200)}))
    assert cache.sizes() == (200, 50)
    run(cache.invalidate_version("skills", "skill-leadership", "v1.0.0"))
    assert cache.sizes() == (0, 0)
    run(cache.set_many({key(f"e{n}", student=f"t-{n}"): b"x" for n in range(100)}))
    clock.now += 11  # all 100 expired; the next write purges them with their index entries
    run(cache.set_many({key("late", student="t-late"): b"y"}))
    assert cache.sizes() == (1, 1)


def test_memory_cache_evicts_the_least_recently_used_beyond_its_size():
    cache = MemoryCache(ttl_s=60, max_entries=2)
    run(cache.set_many({key("a"): b"1", key("b"): b"2"}))
    run(cache.get_many([key("a")]))
    run(cache.set_many({key("c"): b"3"}))
    assert run(cache.get_many([key("a"), key("b"), key("c")])) == [b"1", None, b"3"]


def test_the_cache_url_chooses_the_implementation():
    assert isinstance(cache_from_url("memory://", ttl_s=1, timeout_s=0.05), MemoryCache)
    assert isinstance(cache_from_url("none://", ttl_s=1, timeout_s=0.05), NoCache)
    assert isinstance(cache_from_url("redis://127.0.0.1:1/0", ttl_s=1, timeout_s=0.05), RedisCache)
    with pytest.raises(ValueError, match="unsupported cache URL"):
        cache_from_url("memcached://x", ttl_s=1, timeout_s=0.05)


def test_redis_cache_stores_expires_and_forgets_by_student_and_version(redis_server):
    async def scenario():
        # A generous timeout: this test is about what is stored, not about abandoning a slow Redis.
        cache = RedisCache(redis_server.url(), ttl_s=60, timeout_s=2.0)
        await cache.set_many({key("a"): b"1", key("b"): b"2", key("c", version="v2", student="s-9"): b"3"})
        found = await cache.get_many([key("a"), key("b"), key("c", version="v2", student="s-9"), key("zz")])
        deleted_student = await cache.invalidate_student("s-1")
        after_student = await cache.get_many([key("a"), key("c", version="v2", student="s-9")])
        deleted_version = await cache.invalidate_version("skills", "skill-leadership", "v2")
        after_version = await cache.get_many([key("c", version="v2", student="s-9")])
        short = RedisCache(redis_server.url(), ttl_s=0.2, timeout_s=2.0)
        await short.set_many({key("t"): b"x"})
        await asyncio.sleep(0.3)
        expired = await short.get_many([key("t")])
        await cache.close()
        await short.close()
        return found, deleted_student, after_student, deleted_version, after_version, expired

    found, deleted_student, after_student, deleted_version, after_version, expired = run(scenario())
    assert found == [b"1", b"2", b"3", None]
    assert deleted_student == 2 and after_student == [None, b"3"]
    assert deleted_version == 1 and after_version == [None]
    assert expired == [None]


def test_redis_down_means_misses_counted_logged_once_then_recovery(redis_server, caplog):
    stats = CountingStats()

    async def scenario():
        # Connection refused is immediate, whatever the timeout: a generous one keeps a busy machine's stall
        # from passing for an outage before Redis is stopped or after it is back.
        cache = RedisCache(redis_server.url(), ttl_s=60, timeout_s=2.0, cooldown_s=0.2, log_every_s=60, stats=stats)
        await cache.set_many({key("a"): b"1"})
        redis_server.stop()
        started = time.monotonic()
        down = [await cache.get_many([key("a")]) for _ in range(20)]
        elapsed = time.monotonic() - started
        await cache.set_many({key("b"): b"2"})  # resting: not even tried
        redis_server.start()
        deadline = time.monotonic() + 10
        back = None
        while time.monotonic() < deadline:  # after the cool-down, by itself
            await cache.set_many({key("a"): b"again"})
            back = await cache.get_many([key("a")])
            if back == [b"again"]:
                break
            await asyncio.sleep(0.1)
        await cache.close()
        return down, elapsed, back

    with caplog.at_level(logging.WARNING, logger="inference"):
        down, elapsed, back = run(scenario())
    assert down == [[None]] * 20
    # 20 lookups against a dead Redis: one refused connection, then the cool-down answers the rest at once
    # (20 connection attempts with their retries would take far longer).
    assert elapsed < 1.0, elapsed
    errors = [call for call in stats.calls if call[2] == "error"]
    assert errors and errors[0][:2] == ("skills", "v1.0.0")
    assert len([record for record in caplog.records if "cache get failed" in record.message]) == 1
    assert back == [b"again"]


def test_a_slow_redis_is_abandoned_within_the_timeout(redis_server):
    import threading

    import redis

    def redis_is_asleep() -> bool:
        """A raw PING with a 50 ms read timeout (redis-py would retry a timed-out read until Redis woke up)."""
        with socket.create_connection(("127.0.0.1", redis_server.port), timeout=1) as probe:
            probe.settimeout(0.05)
            probe.sendall(b"PING\r\n")
            try:
                return not probe.recv(16)
            except TimeoutError:
                return True

    async def scenario():
        cache = RedisCache(redis_server.url(), ttl_s=60, timeout_s=0.05, cooldown_s=0.1)
        await cache.set_many({key("a"): b"1"})
        blocker = threading.Thread(
            target=lambda: redis.Redis(port=redis_server.port).execute_command("DEBUG", "SLEEP", "3")
        )
        blocker.start()
        deadline = time.monotonic() + 2.5
        while not redis_is_asleep():  # wait until Redis really is asleep, however slowly the thread started
            assert time.monotonic() < deadline, "Redis never went to sleep"
        started = time.monotonic()
        value = await cache.get_many([key("a")])
        elapsed = time.monotonic() - started
        blocker.join()
        recovered = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the cool-down passes and the cache is used again
            recovered = await cache.get_many([key("a")])
            if recovered == [b"1"]:
                break
            await asyncio.sleep(0.1)
        await cache.close()
        return value, elapsed, recovered

    value, elapsed, recovered = run(scenario())
    # Redis sleeps 3 s: an answer in well under that means the 50 ms timeout gave up on it.
    assert value == [None] and elapsed < 1.5, elapsed
    assert recovered == [b"1"]


def test_200_concurrent_lookups_on_one_worker_wait_for_a_connection_instead_of_failing(redis_server):
    """Past its 64 connections a worker's calls wait for a free one: none fails, the cache never goes to rest."""
    stats = CountingStats()

    async def scenario():
        # The timeout bounds the wait for a connection too; generous, so a stall of a busy machine is not a miss.
        cache = RedisCache(redis_server.url(), ttl_s=60, timeout_s=2.0, stats=stats)
        await cache.set_many({key(f"d{index}"): f"v{index}".encode() for index in range(200)})
        found = await asyncio.gather(*(cache.get_many([key(f"d{index}")]) for index in range(200)))
        connections = len(cache._client.connection_pool._in_use_connections) + len(
            cache._client.connection_pool._available_connections
        )
        resting = cache._resting()
        await cache.close()
        return found, connections, resting

    found, connections, resting = run(scenario())
    assert found == [[f"v{index}".encode()] for index in range(200)]
    assert 1 < connections <= 64  # concurrent calls used several connections, never more than the pool holds
    assert not resting
    assert [call for call in stats.calls if call[2] == "error"] == []


def test_no_free_connection_within_the_timeout_is_one_miss_not_a_redis_failure(redis_server, caplog):
    stats = CountingStats()

    async def scenario():
        cache = RedisCache(redis_server.url(), ttl_s=60, timeout_s=0.1, max_connections=1, stats=stats)
        await cache.set_many({key("a"): b"1"})
        pool = cache._client.connection_pool
        held = await pool.get_connection()  # the only connection, busy
        started = time.monotonic()
        missed = await cache.get_many([key("a")])
        waited = time.monotonic() - started
        resting = cache._resting()
        await pool.release(held)
        found = await cache.get_many([key("a")])  # at once: no cool-down to sit out
        await cache.close()
        return missed, waited, resting, found

    with caplog.at_level(logging.WARNING, logger="inference"):
        missed, waited, resting, found = run(scenario())
    assert missed == [None] and 0.05 < waited < 1.0, waited
    assert not resting and found == [b"1"]
    assert [call for call in stats.calls if call[2] == "error"] == []
    assert any("no free Redis connection" in record.message for record in caplog.records)
