"""The Redis cache behind a real server: shared by the workers, and when Redis stops the service keeps
answering (without the cache), counts the errors, logs them once per interval, refuses an explicit invalidation
with 503, and recovers by itself."""

import time

import httpx
import pytest

from tests.utils.prometheus import metric_total
from tests.utils.requests import student_items
from tests.utils.servers import start_server

pytestmark = pytest.mark.server

INFER = "/api/v1/skills/infer"
ADMIN_TOKEN = "redis-drill-admin-token-0123456789"


def infer(url, item):
    return httpx.post(url + INFER, json=item, headers={"Connection": "close"}, timeout=30)


def errors_counted(url):
    return metric_total(url, "inference_cache_requests_total", outcome="error")


def test_redis_is_shared_and_its_outage_costs_nothing_but_the_cache(trained_versions, redis_server, session_dir):
    env = {
        "INFERENCE_SKILLS_VERSION": "v1.0.0",
        "INFERENCE_FAMILIES": '["skills"]',
        "CACHE_URL": redis_server.url(),
        "INFERENCE_ADMIN_TOKEN": ADMIN_TOKEN,
        # A refused connection fails at once whatever the timeout; a generous one keeps a stall of the busy
        # test machine from passing for an outage while Redis is up.
        "INFERENCE_CACHE_TIMEOUT_MS": "1000",
    }
    with start_server(session_dir / "logs-redis", env=env) as server:
        item = student_items(1, seed=81)[0]
        answers = [infer(server.url, item).json() for _ in range(8)]
        assert [answer["cached"] for answer in answers] == [False] + [True] * 7  # one miss, whichever worker

        redis_server.stop()
        try:
            started = time.monotonic()
            during = [infer(server.url, student) for student in student_items(40, seed=82)]
            elapsed = time.monotonic() - started
            assert all(response.status_code == 200 for response in during)
            assert not any(response.json()["cached"] for response in during)
            assert elapsed < 20  # no request waits long on the dead Redis
            assert errors_counted(server.url) >= 1
            failures_logged = server.log().count("cache get failed")
            assert 1 <= failures_logged <= 2  # once per worker per interval, not once per request
            # An explicit cache operation cannot be skipped silently: the caller hears it did not happen.
            forget = httpx.delete(
                server.url + "/api/v1/cache/students/" + item["student_id"],
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                timeout=30,
            )
            assert forget.status_code == 503 and forget.json()["code"] == "cache_unavailable", forget.text
        finally:
            redis_server.start()

        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # after the cool-down the cache is used again, by itself
            if infer(server.url, item).json()["cached"] and infer(server.url, item).json()["cached"]:
                break
            time.sleep(0.5)
        else:
            pytest.fail("the cache did not come back after Redis restarted")
