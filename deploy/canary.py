"""A stable and a canary version side by side on one machine, behind Debian's nginx with a weighted split.

    python -m deploy.canary start --stable inference:0.1.0 --canary inference:0.2.0 --weight 10 --port 8080
    python -m deploy.canary set-weight 50        # share of requests the canary answers, 0-100
    python -m deploy.canary rollback             # everything back to stable (weight 0)
    python -m deploy.canary promote              # the canary's Bento becomes stable, then weight 0
    python -m deploy.canary status
    python -m deploy.canary stop                 # also cleans up after a crash

Each version is a Bento served by its own `bentoml serve` process on a free loopback port, with a BentoML home of
its own (sharing the model and Bento stores) so the two servers' metrics never mix; nginx listens on --port and
picks the canary for the given share of requests at random (`split_clients`), or always for "X-Canary: always"
("never" pins a request to stable). Every answer says which side served it in the `X-Served-By` response header.
A weight change is refused when the side that would take traffic is not ready; it rewrites the configuration,
checks it with `nginx -t`, reloads, and returns once the old nginx workers have finished their requests, so none
is dropped. This is the mechanism of the NGINX ingress canary in k8s/overlays/canary, for trying a version out
before a cluster; the state (ports, Bentos, processes, weight) lives in --run-dir (default .canary/).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from inference.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUN_DIR = PROJECT_ROOT / ".canary"
TRACKS = ("stable", "canary")


class CanaryError(Exception):
    """A command could not do what was asked; the message says why and what to do."""


@dataclass
class Backend:
    bento: str
    port: int
    pid: int
    started: int  # the process's start time (clock ticks after boot): a reused pid is not this process
    # BentoML's workers run in sessions of their own: when the server process is killed they live on, so they
    # are recorded (pid, start time) to be stopped after a crash too.
    workers: list[tuple[int, int]] = field(default_factory=list)

    def alive(self) -> bool:
        return process_start(self.pid) == self.started

    def live_workers(self) -> list[int]:
        return [pid for pid, started in self.workers if process_start(pid) == started]

    def ready(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


@dataclass
class State:
    listen_port: int
    weight: int
    stable: Backend
    canary: Backend
    env: dict[str, dict[str, str]]

    @classmethod
    def load(cls, run_dir: Path) -> State:
        path = run_dir / "state.json"
        if not path.exists():
            raise CanaryError(f"no canary is running from {run_dir} (start one with `start`)")
        raw = json.loads(path.read_text())
        backends = {
            track: Backend(**{**raw[track], "workers": [tuple(w) for w in raw[track]["workers"]]}) for track in TRACKS
        }
        return cls(raw["listen_port"], raw["weight"], backends["stable"], backends["canary"], raw["env"])

    def save(self, run_dir: Path) -> None:
        path = run_dir / "state.json"
        path.touch(mode=0o600)  # the environment may hold secrets
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")


def process_start(pid: int) -> int | None:
    """The start time of a live (not zombie) process, from /proc; None when there is no such process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[19])


def render_nginx_config(run_dir: Path, state: State) -> str:
    """nginx.conf for the split: `weight` percent of requests to the canary, the rest to stable."""
    if not 0 <= state.weight <= 100:
        raise ValueError(f"weight: expected 0 to 100, got {state.weight}")
    if state.weight == 0:
        split = "* stable;"
    elif state.weight == 100:
        split = "* canary;"
    else:
        split = f"{state.weight}% canary; * stable;"
    temp = run_dir / "nginx-temp"
    # The service's own body limit (nginx's default, 1 MiB, would stop a 1000-text batch with an HTML 413); what
    # goes over it gets the service's JSON error.
    max_body = Settings().max_body_bytes
    too_large = json.dumps(
        {"error": f"request body: at most {max_body} bytes (at the proxy)", "code": "body_too_large"}
    )
    return f"""# Written by deploy/canary.py; changes are made with its commands.
worker_processes 1;
pid "{run_dir}/nginx.pid";
error_log "{run_dir}/nginx-error.log" warn;
events {{ worker_connections 1024; }}
http {{
    access_log "{run_dir}/nginx-access.log";
    client_body_temp_path "{temp}/body";
    proxy_temp_path "{temp}/proxy";
    fastcgi_temp_path "{temp}/fastcgi";
    uwsgi_temp_path "{temp}/uwsgi";
    scgi_temp_path "{temp}/scgi";
    upstream stable {{ server 127.0.0.1:{state.stable.port}; keepalive 16; }}
    upstream canary {{ server 127.0.0.1:{state.canary.port}; keepalive 16; }}
    # canary weight {state.weight}
    split_clients "${{request_id}}" $weighted_track {{ {split} }}
    map $http_x_canary $track {{
        always canary;
        never stable;
        default $weighted_track;
    }}
    client_max_body_size {max_body};
    # Bodies and answers are streamed, never spooled to the temp paths (nginx's workers may not be able to write
    # there when it runs as root, and a batch over 16 KiB would fail with a 500).
    proxy_request_buffering off;
    proxy_max_temp_file_size 0;
    server {{
        listen 127.0.0.1:{state.listen_port};
        error_page 413 = @too_large;
        location @too_large {{
            default_type application/json;
            return 413 '{too_large}';
        }}
        location / {{
            proxy_pass http://$track;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            add_header X-Served-By $track always;
        }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nginx(run_dir: Path, *args: str, config: str = "nginx.conf") -> None:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        raise CanaryError("nginx is not installed (apt-get install nginx)")
    run = subprocess.run(
        [binary, "-p", str(run_dir), "-c", str(run_dir / config), *args], capture_output=True, text=True
    )
    if run.returncode != 0:
        raise CanaryError(f"nginx {' '.join(args) or 'start'} failed: {run.stderr.strip()}")


def nginx_master(run_dir: Path) -> int | None:
    try:
        pid = int((run_dir / "nginx.pid").read_text())
    except (FileNotFoundError, ValueError):
        return None
    return pid if process_start(pid) is not None else None


def nginx_workers(master: int) -> set[int]:
    return set(children(master))


def write_config(run_dir: Path, state: State) -> None:
    (run_dir / "nginx.conf.new").write_text(render_nginx_config(run_dir, state))
    nginx(run_dir, "-t", "-q", config="nginx.conf.new")  # checked before it replaces the running configuration
    (run_dir / "nginx.conf.new").replace(run_dir / "nginx.conf")


def reload_nginx(run_dir: Path, timeout: float = 60.0) -> None:
    """`nginx -s reload` only signals the master; the old workers finish their requests in flight and exit later.
    Wait for that, so that what follows (stopping a backend) cannot cut a request the old split still routes."""
    master = nginx_master(run_dir)
    if master is None:
        raise CanaryError(f"nginx is not running from {run_dir}; `stop`, then `start` again")
    before = nginx_workers(master)
    nginx(run_dir, "-s", "reload")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = nginx_workers(master)
        if workers and not workers & before:
            return
        time.sleep(0.05)
    raise CanaryError(f"nginx did not finish reloading within {timeout:.0f} s (old workers {sorted(before)})")


def backend_home(run_dir: Path, track: str, port: int, shared: Path | None = None) -> Path:
    """A BentoML home of its own (BentoML keeps and wipes its Prometheus files there at every start), sharing
    the Bento and model stores of `shared` (default: the usual home)."""
    shared = shared or Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml")
    home = run_dir / "homes" / f"{track}-{port}"
    home.mkdir(parents=True, exist_ok=True)
    for store in ("bentos", "models"):
        (shared / store).mkdir(parents=True, exist_ok=True)
        link = home / store
        if not link.exists():
            link.symlink_to(shared / store)
    return home


def start_backend(
    run_dir: Path, track: str, bento: str, env: dict[str, str]
) -> tuple[Backend, subprocess.Popen[bytes]]:
    port = free_port()
    home = backend_home(run_dir, track, port)
    full_env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "BENTOML_HOME": str(home), **env}
    bentoml = Path(sys.executable).parent / "bentoml"
    with (run_dir / f"{track}.log").open("ab") as log:
        process = subprocess.Popen(
            [str(bentoml), "serve", bento, "--host", "127.0.0.1", "--port", str(port)],
            cwd=run_dir,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started = process_start(process.pid)
    return Backend(bento, port, process.pid, started or 0), process


def wait_ready(
    backend: Backend, track: str, run_dir: Path, process: subprocess.Popen[bytes] | None = None, timeout: float = 180
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if backend.ready():
            backend.workers = [(pid, process_start(pid) or 0) for pid in children(backend.pid)]
            return
        exited = process.poll() is not None if process is not None else not backend.alive()
        if exited:
            break
        time.sleep(0.5)
    log = (run_dir / f"{track}.log").read_text(errors="replace")[-3000:]
    raise CanaryError(f"{track} ({backend.bento}) did not become ready on port {backend.port}:\n{log}")


def stop_backend(backend: Backend, timeout: float = 30.0) -> None:
    """SIGTERM to the server (it stops its workers after their requests in flight), SIGKILL after `timeout`;
    workers left behind by a server that is gone get the same. Processes are matched by pid and start time."""
    if backend.alive():
        with suppress(ProcessLookupError):
            os.kill(backend.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while backend.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
            with suppress(ChildProcessError):  # our child when started by this process: reap it
                os.waitpid(backend.pid, os.WNOHANG)
        if backend.alive():
            with suppress(ProcessLookupError):
                os.kill(backend.pid, signal.SIGKILL)
    orphans = backend.live_workers()
    for pid in orphans:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while backend.live_workers() and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in backend.live_workers():
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        if "=" not in pair:
            raise CanaryError(f"--*-env: expected NAME=VALUE, got {pair!r}")
        name, value = pair.split("=", 1)
        env[name] = value
    return env


@contextmanager
def exclusive(run_dir: Path) -> Iterator[None]:
    """One command at a time per run directory: a promotion and a weight change must not interleave."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / ".lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CanaryError(f"another deploy.canary command is running on {run_dir}") from None
        yield


def start(args: argparse.Namespace) -> None:
    run_dir: Path = args.run_dir
    if (run_dir / "state.json").exists():
        raise CanaryError(f"a canary is already running from {run_dir}; `stop` it first")
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (run_dir / "nginx-temp" / name).mkdir(parents=True, exist_ok=True)
    env = {"stable": parse_env(args.stable_env), "canary": parse_env(args.canary_env)}
    started = {track: start_backend(run_dir, track, getattr(args, track), env[track]) for track in TRACKS}
    backends = {track: backend for track, (backend, _) in started.items()}
    state = State(args.port or free_port(), args.weight, backends["stable"], backends["canary"], env)
    try:
        for track, (backend, process) in started.items():
            wait_ready(backend, track, run_dir, process)
        write_config(run_dir, state)
        nginx(run_dir)
    except BaseException:
        for backend in backends.values():
            stop_backend(backend)
        raise
    state.save(run_dir)
    print(f"listening on http://127.0.0.1:{state.listen_port}: {describe(state)}")


def apply_weight(run_dir: Path, state: State, weight: int) -> None:
    """Switch the split once the side that would take traffic is ready; returns when nginx answers only with
    the new configuration."""
    for track, takes_traffic in (("stable", weight < 100), ("canary", weight > 0)):
        backend: Backend = getattr(state, track)
        if takes_traffic and not backend.ready():
            raise CanaryError(
                f"{track} ({backend.bento} on :{backend.port}) is not ready; the weight stays {state.weight}"
            )
    previous = state.weight
    state.weight = weight
    try:
        write_config(run_dir, state)
        reload_nginx(run_dir)
    except CanaryError:
        state.weight = previous
        raise
    state.save(run_dir)


def set_weight(args: argparse.Namespace) -> None:
    state = State.load(args.run_dir)
    apply_weight(args.run_dir, state, args.weight)
    print(describe(state))


def rollback(args: argparse.Namespace) -> None:
    state = State.load(args.run_dir)
    apply_weight(args.run_dir, state, 0)
    print(f"rolled back: {describe(state)}")


def promote(args: argparse.Namespace) -> None:
    """Start a new stable on the canary's Bento beside the old one; once it is ready, switch nginx to it with the
    canary's share at 0, then stop the old stable. Stable answers throughout; a new stable that never becomes
    ready leaves everything as it was."""
    run_dir = args.run_dir
    state = State.load(run_dir)
    old_stable = state.stable
    new_stable, process = start_backend(run_dir, "stable", state.canary.bento, state.env["canary"])
    try:
        wait_ready(new_stable, "stable", run_dir, process)
        state.stable = new_stable
        apply_weight(run_dir, state, 0)
    except BaseException:
        state.stable = old_stable
        stop_backend(new_stable)
        raise
    state.env["stable"] = state.env["canary"]
    state.save(run_dir)
    stop_backend(old_stable)
    print(f"promoted: {describe(state)}")


def status(args: argparse.Namespace) -> None:
    state = State.load(args.run_dir)
    serving = "nginx running" if nginx_master(args.run_dir) else "NGINX NOT RUNNING"
    print(f"http://127.0.0.1:{state.listen_port}: {describe(state)}; {serving}")
    for track in TRACKS:
        backend: Backend = getattr(state, track)
        health = "ready" if backend.ready() else "NOT READY"
        if not backend.alive():
            health += ", SERVER PROCESS GONE" + (" (its workers still run)" if backend.live_workers() else "")
        print(f"  {track}: {backend.bento} on :{backend.port}, pid {backend.pid}, {health}")


def stop(args: argparse.Namespace) -> None:
    """Stop whatever is still running, even after a crash, and forget the state."""
    run_dir = args.run_dir
    master = nginx_master(run_dir)
    if master is not None:
        with suppress(ProcessLookupError):
            os.kill(master, signal.SIGQUIT)  # graceful: requests in flight finish
        deadline = time.monotonic() + 30
        while process_start(master) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
    if (run_dir / "state.json").exists():
        state = State.load(run_dir)
        for track in TRACKS:
            stop_backend(getattr(state, track))
        (run_dir / "state.json").unlink()
    shutil.rmtree(run_dir / "homes", ignore_errors=True)
    print("stopped")


def describe(state: State) -> str:
    return f"stable {state.stable.bento} {100 - state.weight}%, canary {state.canary.bento} {state.weight}%"


def weight_type(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number 0-100, got {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"expected 0 to 100, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.canary", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR, help="state, logs, nginx.conf (.canary/)")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    starting = commands.add_parser("start", help="serve both Bentos and the nginx split")
    starting.add_argument("--stable", required=True, help="the stable Bento, e.g. inference:0.1.0")
    starting.add_argument("--canary", required=True, help="the canary Bento, e.g. inference:0.2.0")
    starting.add_argument("--weight", type=weight_type, default=10, help="canary share in percent (10)")
    starting.add_argument("--port", type=int, default=0, help="nginx's port on 127.0.0.1 (default: a free one)")
    starting.add_argument("--stable-env", action="append", default=[], metavar="NAME=VALUE")
    starting.add_argument("--canary-env", action="append", default=[], metavar="NAME=VALUE")
    starting.set_defaults(command=start)
    weighting = commands.add_parser("set-weight", help="the canary's share of requests, 0-100")
    weighting.add_argument("weight", type=weight_type)
    weighting.set_defaults(command=set_weight)
    for name, command, text in (
        ("rollback", rollback, "all traffic to stable (weight 0)"),
        ("promote", promote, "make the canary's Bento the stable one"),
        ("status", status, "versions, weight, readiness"),
        ("stop", stop, "stop nginx and both servers (also after a crash)"),
    ):
        commands.add_parser(name, help=text).set_defaults(command=command)
    args = parser.parse_args(argv)
    args.run_dir = args.run_dir.resolve()
    try:
        with exclusive(args.run_dir):
            args.command(args)
    except CanaryError as error:
        print(f"deploy.canary: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
