"""Stable and canary side by side for real: two Bentos (skills v1.0.0 and v1.1.0) served by `bentoml serve` behind
Debian's nginx, driven by `python -m deploy.canary`: the observed split follows the weight, the version answering
is the side's own, shifting the weight, rolling back and promoting under load fail no request, and a change that
cannot be made safely (a side not ready, a configuration nginx rejects) changes nothing."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from inference.settings import Settings
from tests.utils.needs import unavailable
from tests.utils.requests import student_items
from tests.utils.servers import BENTOML, PROJECT_ROOT

pytestmark = [pytest.mark.server, pytest.mark.slow]

STABLE_BENTO, CANARY_BENTO = "inference:0.8.0-stable", "inference:0.9.0-canary"
ITEMS = student_items(200, seed=77)


def build_bento(tag: str, *, skills_version: str, context: Path) -> str:
    """A Bento of this project whose skill models are pinned to `skills_version` (the way a release changes them:
    models.env and bentofile.yaml), built from a copy of the sources."""
    shutil.copytree(PROJECT_ROOT / "inference", context / "inference", ignore=shutil.ignore_patterns("__pycache__"))
    (context / "deploy").mkdir()
    shutil.copy(PROJECT_ROOT / "deploy" / "containerfile.j2", context / "deploy")
    shutil.copy(PROJECT_ROOT / "service.py", context)
    shutil.copytree(PROJECT_ROOT / "requirements", context / "requirements")  # the runtime lock bentofile.yaml installs
    models_env = (PROJECT_ROOT / "models.env").read_text()
    bentofile = (PROJECT_ROOT / "bentofile.yaml").read_text()
    pinned = models_env.split("INFERENCE_SKILLS_VERSION=")[1].split()[0]
    (context / "models.env").write_text(
        models_env.replace(f"INFERENCE_SKILLS_VERSION={pinned}", f"INFERENCE_SKILLS_VERSION={skills_version}")
    )
    (context / "bentofile.yaml").write_text(
        "\n".join(
            line.replace(f":{pinned}", f":{skills_version}") if '"skill-' in line else line
            for line in bentofile.splitlines()
        )
    )
    version = tag.split(":")[1]
    subprocess.run([BENTOML, "build", "--version", version], cwd=context, check=True, capture_output=True)
    return tag


def run_canary(run_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.canary", "--run-dir", str(run_dir), *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def canary(run_dir: Path, *args: str) -> str:
    run = run_canary(run_dir, *args)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def refused(run_dir: Path, *args: str) -> str:
    """A deploy.canary command that must fail (exit 1); its message."""
    run = run_canary(run_dir, *args)
    assert run.returncode == 1, run.stdout + run.stderr
    return run.stderr


def settings_of(run_dir: Path) -> dict[str, str]:
    """What a refused change must leave as it was: the recorded state (weight, backends) and nginx's configuration."""
    return {name: (run_dir / name).read_text() for name in ("state.json", "nginx.conf")}


def wait_for(condition, *, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.2)
    raise TimeoutError(f"waited {timeout} s for {what}")


@pytest.fixture(scope="module")
def split(trained_versions, text_reports, tmp_path_factory):
    if shutil.which("nginx") is None and not os.path.exists("/usr/sbin/nginx"):
        unavailable("nginx is not installed (apt-get install nginx)")
    build_bento(STABLE_BENTO, skills_version="v1.0.0", context=tmp_path_factory.mktemp("stable-src"))
    build_bento(CANARY_BENTO, skills_version="v1.1.0", context=tmp_path_factory.mktemp("canary-src"))
    run_dir = tmp_path_factory.mktemp("canary-run")
    output = canary(run_dir, "start", "--stable", STABLE_BENTO, "--canary", CANARY_BENTO, "--weight", "10")
    url = re.search(r"listening on (http://127\.0\.0\.1:\d+)", output).group(1)
    try:
        yield run_dir, url
    finally:
        subprocess.run([sys.executable, "-m", "deploy.canary", "--run-dir", str(run_dir), "stop"], cwd=PROJECT_ROOT)


# A kept-alive connection that nginx closes while reloading (the old worker closes it when idle) can meet a request
# the client sent at that moment: nothing was processed, and a client retries such a request once on a new
# connection, as HTTP clients do. Anything else, or a second failure, is a failed request.
STALE_CONNECTION = (httpx.RemoteProtocolError, httpx.ReadError)


def send(
    client: httpx.Client, index: int, headers: dict[str, str] | None = None, retried: list[int] | None = None
) -> tuple[str, str]:
    request = {"json": ITEMS[index % len(ITEMS)], "headers": headers or {}}
    try:
        response = client.post("/api/v1/skills/infer", **request)
    except STALE_CONNECTION:
        if retried is not None:
            retried.append(index)
        response = client.post("/api/v1/skills/infer", **request)
    for _ in range(3):  # a 503 with Retry-After is the edge shedding a burst: sent again, as the clients do
        if response.status_code != 503 or "Retry-After" not in response.headers:
            break
        time.sleep(min(float(response.headers["Retry-After"]), 2.0))
        response = client.post("/api/v1/skills/infer", **request)
    response.raise_for_status()
    return response.headers["X-Served-By"], response.json()["model_version"]


def observe(url: str, count: int) -> Counter[tuple[str, str]]:
    with httpx.Client(base_url=url, timeout=30) as client, ThreadPoolExecutor(8) as pool:
        return Counter(pool.map(lambda index: send(client, index), range(count)))


class Background:
    """Requests sent without pause from 4 threads while the split changes; every failure is kept."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.url, self.stop, self.failures, self.sent = url, threading.Event(), [], 0
        self.headers = headers
        self.retried: list[int] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._loop) for _ in range(4)]

    def _loop(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            index = 0
            while not self.stop.is_set():
                index += 1
                try:
                    send(client, index, self.headers, retried=self.retried)
                except httpx.HTTPError as err:
                    with self.lock:
                        self.failures.append(repr(err))
                with self.lock:
                    self.sent += 1

    def __enter__(self) -> Background:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def test_the_proxy_takes_the_bodies_the_service_takes_and_answers_larger_ones_as_the_service_does(split):
    _, url = split
    # As many characters as a request may carry (INFERENCE_MAX_REQUEST_CHARS), each sent as a \u escape of 6 bytes:
    # a 1.2 MB body, over nginx's default of 1 MiB.
    settings = Settings()
    count = settings.max_request_chars // settings.max_text_chars
    texts = [(f"{i} " + "éàüôçñ" * 400)[: settings.max_text_chars] for i in range(count)]
    body = json.dumps({"texts": texts}).encode()
    assert len(body) > 2**20
    batch = httpx.post(
        url + "/api/classify/batch",
        content=body,
        headers={"X-Model-Preference": "classic", "Content-Type": "application/json"},
        timeout=300,
    )
    assert batch.status_code == 200, batch.text[:500]
    assert batch.json()["succeeded"] == count
    too_large = httpx.post(
        url + "/api/classify/batch",
        content=b" " * (Settings().max_body_bytes + 1),
        headers={"Content-Type": "application/json"},
        timeout=120,
    )
    assert too_large.status_code == 413 and too_large.json()["code"] == "body_too_large", too_large.text[:300]


def test_the_observed_split_follows_the_weight_and_each_side_answers_with_its_own_version(split):
    run_dir, url = split
    seen = observe(url, 1000)
    assert set(seen) == {("stable", "v1.0.0"), ("canary", "v1.1.0")}, seen
    canary_share = seen["canary", "v1.1.0"] / 1000
    assert 0.06 <= canary_share <= 0.14, seen  # 10% +- 4.2 standard deviations of a binomial of 1000
    with httpx.Client(base_url=url, timeout=30) as client:
        forced = {send(client, index, {"X-Canary": "always"}) for index in range(20)}
        pinned = {send(client, index, {"X-Canary": "never"}) for index in range(20)}
    assert forced == {("canary", "v1.1.0")} and pinned == {("stable", "v1.0.0")}
    assert "canary inference:0.9.0-canary 10%" in canary(run_dir, "status")


def test_shifting_to_50_and_rolling_back_under_load_fails_no_request(split):
    run_dir, url = split
    with Background(url) as load:
        canary(run_dir, "set-weight", "50")
        at_half = observe(url, 1000)
        canary(run_dir, "rollback")
        after_rollback = observe(url, 300)
        canary(run_dir, "set-weight", "10")
    assert load.failures == [] and load.sent > 500, (load.failures[:5], load.sent)
    assert len(load.retried) <= max(5, load.sent // 200)  # a few requests meet a closed connection, not many
    print(f"{load.sent} requests during the changes, {len(load.retried)} retried on a connection nginx closed")
    assert 0.42 <= at_half["canary", "v1.1.0"] / 1000 <= 0.58, at_half  # 50% +- 5 standard deviations
    assert set(after_rollback) == {("stable", "v1.0.0")}


def test_a_weight_change_is_refused_while_the_side_that_would_take_traffic_is_not_ready(split):
    run_dir, url = split
    before = settings_of(run_dir)
    state = json.loads(before["state.json"])
    canary_side = state["canary"]
    hung = [canary_side["pid"], *(pid for pid, _ in canary_side["workers"])]
    for pid in hung:  # a canary that hangs: /readyz no longer answers
        os.kill(pid, signal.SIGSTOP)
    try:
        for weight in ("50", "100"):
            message = refused(run_dir, "set-weight", weight)
            assert f"canary ({CANARY_BENTO} on :{canary_side['port']}) is not ready; the weight stays 10" in message
            assert settings_of(run_dir) == before
        with httpx.Client(base_url=url, timeout=30) as client:  # stable answers as before
            assert {send(client, index, {"X-Canary": "never"}) for index in range(20)} == {("stable", "v1.0.0")}
        # Taking the hung canary's share away needs only stable: that goes through.
        assert "stable inference:0.8.0-stable 100%, canary inference:0.9.0-canary 0%" in canary(run_dir, "rollback")
        assert set(observe(url, 100)) == {("stable", "v1.0.0")}
    finally:
        for pid in hung:
            os.kill(pid, signal.SIGCONT)
    canary(run_dir, "set-weight", "10")
    assert settings_of(run_dir) == before


def test_a_configuration_nginx_rejects_is_never_applied(split):
    from deploy.canary import CanaryError, State, apply_weight

    run_dir, url = split
    before = settings_of(run_dir)
    state = State.load(run_dir)
    state.listen_port = 70_000  # not a port: `nginx -t` rejects the configuration
    with pytest.raises(CanaryError, match=r"nginx -t -q failed: .*invalid port"):
        apply_weight(run_dir, state, 50)
    assert state.weight == 10 and settings_of(run_dir) == before
    assert "canary inference:0.9.0-canary 10%; nginx running" in canary(run_dir, "status")
    assert set(observe(url, 200)) == {("stable", "v1.0.0"), ("canary", "v1.1.0")}


def test_a_promotion_whose_new_stable_never_gets_ready_leaves_everything_as_it_was(split, tmp_path):
    run_dir, url = split
    original = settings_of(run_dir)
    state = json.loads(original["state.json"])
    # The new stable is the canary's Bento started with the canary's environment: one that points BentoML at an
    # empty store makes a new stable that cannot load its Bento and exits without ever being ready.
    state["env"]["canary"] = {"BENTOML_HOME": str(tmp_path / "empty-bentoml-home")}
    (run_dir / "state.json").write_text(json.dumps(state, indent=2) + "\n")
    before = settings_of(run_dir)
    homes = set((run_dir / "homes").iterdir())
    try:
        message = refused(run_dir, "promote")
        assert f"stable ({CANARY_BENTO}) did not become ready on port" in message
        assert settings_of(run_dir) == before
        (new_home,) = set((run_dir / "homes").iterdir()) - homes  # homes/stable-PORT of the new stable
        with pytest.raises(httpx.HTTPError):  # nothing of it is left answering
            httpx.get(f"http://127.0.0.1:{new_home.name.rsplit('-', 1)[1]}/livez", timeout=2)
        status = canary(run_dir, "status")
        assert "stable inference:0.8.0-stable 90%, canary inference:0.9.0-canary 10%; nginx running" in status
        assert status.count(", ready") == 2, status
        assert set(observe(url, 200)) == {("stable", "v1.0.0"), ("canary", "v1.1.0")}
    finally:
        (run_dir / "state.json").write_text(original["state.json"])


def test_promoting_makes_the_canary_version_stable_without_a_failed_request(split):
    run_dir, url = split
    with Background(url) as load, Background(url, {"X-Canary": "never"}) as pinned:
        output = canary(run_dir, "promote")
    assert load.failures == [] and pinned.failures == [], (load.failures[:5], pinned.failures[:5])
    assert len(load.retried) + len(pinned.retried) <= max(5, (load.sent + pinned.sent) // 200)
    print(f"{load.sent + pinned.sent} requests during the promotion, stable always answering")
    assert "promoted: stable inference:0.9.0-canary 100%" in output
    assert set(observe(url, 200)) == {("stable", "v1.1.0")}


def test_stop_cleans_up_after_a_crash(split):
    run_dir, url = split
    state = json.loads((run_dir / "state.json").read_text())
    master = int((run_dir / "nginx.pid").read_text())
    workers = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    for pid in (master, *map(int, workers), state["stable"]["pid"], state["canary"]["pid"]):
        os.kill(pid, signal.SIGKILL)  # nginx and both servers die at once; BentoML's workers live on

    def status_after_the_crash():
        status = canary(run_dir, "status")
        return status if "NGINX NOT RUNNING" in status and status.count("SERVER PROCESS GONE") == 2 else None

    wait_for(status_after_the_crash, what="`status` to report nginx and both servers gone")
    assert "stopped" in canary(run_dir, "stop")
    assert not (run_dir / "state.json").exists()
    for port in (state["stable"]["port"], state["canary"]["port"], int(url.rsplit(":", 1)[1])):
        with pytest.raises(httpx.HTTPError):  # nothing is left answering: the orphaned workers were stopped too
            httpx.get(f"http://127.0.0.1:{port}/livez", timeout=2)
