"""A stable and a canary version side by side on one machine, behind Debian's nginx with a weighted split.

    python -m deploy.canary start --stable inference:0.1.0 --canary inference:0.2.0 --weight 10 --port 8080
    python -m deploy.canary set-weight 50        # share of requests the canary answers, 0-100
    python -m deploy.canary rollback             # everything back to stable (weight 0)
    python -m deploy.canary promote              # the canary's Bento becomes stable, then weight 0
    python -m deploy.canary status
    python -m deploy.canary stop

Each version is a Bento served by its own `bentoml serve` process on a free loopback port; nginx listens on
--port and picks the canary for the given share of requests at random (`split_clients`), or always for
"X-Canary: always" ("never" pins a request to stable). Every answer says which side served it in the
`X-Served-By` response header. Weight changes rewrite the configuration and `nginx -s reload`: nginx finishes the
requests in flight on its old workers, so none is dropped. This is the same mechanism as the NGINX ingress
canary of k8s/overlays/canary, for trying a version out before a cluster, and the state (ports, Bentos, weight)
lives in --run-dir (default .canary/).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUN_DIR = PROJECT_ROOT / ".canary"
TRACKS = ("stable", "canary")


@dataclass
class Backend:
    bento: str
    port: int
    pid: int


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
            raise SystemExit(f"no canary is running from {run_dir} (start one with `start`)")
        raw = json.loads(path.read_text())
        return cls(raw["listen_port"], raw["weight"], Backend(**raw["stable"]), Backend(**raw["canary"]), raw["env"])

    def save(self, run_dir: Path) -> None:
        (run_dir / "state.json").write_text(json.dumps(asdict(self), indent=2) + "\n")


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
    return f"""# Written by deploy/canary.py; changes are made with its commands.
worker_processes 1;
pid {run_dir}/nginx.pid;
error_log {run_dir}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {run_dir}/nginx-access.log;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    upstream stable {{ server 127.0.0.1:{state.stable.port}; keepalive 16; }}
    upstream canary {{ server 127.0.0.1:{state.canary.port}; keepalive 16; }}
    # canary weight {state.weight}
    split_clients "${{request_id}}" $weighted_track {{ {split} }}
    map $http_x_canary $track {{
        always canary;
        never stable;
        default $weighted_track;
    }}
    server {{
        listen 127.0.0.1:{state.listen_port};
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


def nginx(run_dir: Path, *args: str) -> None:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    subprocess.run([binary, "-p", str(run_dir), "-c", str(run_dir / "nginx.conf"), *args], check=True)


def write_config(run_dir: Path, state: State) -> None:
    config = render_nginx_config(run_dir, state)
    (run_dir / "nginx.conf.new").write_text(config)
    nginx_test = [shutil.which("nginx") or "/usr/sbin/nginx", "-t", "-q", "-p", str(run_dir)]
    subprocess.run([*nginx_test, "-c", str(run_dir / "nginx.conf.new")], check=True)
    (run_dir / "nginx.conf.new").replace(run_dir / "nginx.conf")


def start_backend(run_dir: Path, track: str, bento: str, env: dict[str, str]) -> Backend:
    port = free_port()
    metrics_dir = run_dir / f"prometheus-{track}"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    full_env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), **env}
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
    return Backend(bento, port, process.pid)


def wait_ready(backend: Backend, track: str, run_dir: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{backend.port}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if not alive(backend.pid):
            break
        time.sleep(0.5)
    log = (run_dir / f"{track}.log").read_text(errors="replace")[-3000:]
    raise SystemExit(f"{track} ({backend.bento}) did not become ready on port {backend.port}:\n{log}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_backend(backend: Backend, timeout: float = 30.0) -> None:
    if not alive(backend.pid):
        return
    os.killpg(backend.pid, signal.SIGTERM)  # graceful: in-flight requests finish
    deadline = time.monotonic() + timeout
    while alive(backend.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
        with suppress(ChildProcessError):  # our child when started by this process: reap it
            os.waitpid(backend.pid, os.WNOHANG)
    if alive(backend.pid):
        os.killpg(backend.pid, signal.SIGKILL)


def parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"--*-env: expected NAME=VALUE, got {pair!r}")
        name, value = pair.split("=", 1)
        env[name] = value
    return env


def start(args: argparse.Namespace) -> None:
    run_dir: Path = args.run_dir
    if (run_dir / "state.json").exists():
        raise SystemExit(f"a canary is already running from {run_dir}; `stop` it first")
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (run_dir / "nginx-temp" / name).mkdir(parents=True, exist_ok=True)
    env = {"stable": parse_env(args.stable_env), "canary": parse_env(args.canary_env)}
    backends = {track: start_backend(run_dir, track, getattr(args, track), env[track]) for track in TRACKS}
    state = State(args.port or free_port(), args.weight, backends["stable"], backends["canary"], env)
    try:
        for track in TRACKS:
            wait_ready(backends[track], track, run_dir)
        write_config(run_dir, state)
        nginx(run_dir)
    except BaseException:
        for backend in backends.values():
            stop_backend(backend)
        raise
    state.save(run_dir)
    print(f"listening on http://127.0.0.1:{state.listen_port}: {describe(state)}")


def set_weight(args: argparse.Namespace) -> None:
    state = State.load(args.run_dir)
    apply_weight(args.run_dir, state, args.weight)
    print(describe(state))


def apply_weight(run_dir: Path, state: State, weight: int) -> None:
    """Switch the split; returns once nginx answers only with the new configuration."""
    state.weight = weight
    write_config(run_dir, state)  # checked by `nginx -t` before it replaces the running configuration
    reload_nginx(run_dir)
    state.save(run_dir)


def reload_nginx(run_dir: Path, timeout: float = 60.0) -> None:
    """`nginx -s reload` only signals the master; the old workers finish their requests in flight and exit later.
    Wait for that, so that what follows (stopping a backend) cannot cut a request the old split still routes."""
    master = int((run_dir / "nginx.pid").read_text())
    before = nginx_workers(master)
    nginx(run_dir, "-s", "reload")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = nginx_workers(master)
        if workers and not workers & before:
            return
        time.sleep(0.05)
    raise SystemExit(f"nginx did not finish reloading within {timeout:.0f} s (workers {sorted(before)} still running)")


def nginx_workers(master: int) -> set[int]:
    children = Path(f"/proc/{master}/task/{master}/children")
    return {int(pid) for pid in children.read_text().split()} if children.exists() else set()


def rollback(args: argparse.Namespace) -> None:
    state = State.load(args.run_dir)
    apply_weight(args.run_dir, state, 0)
    print(f"rolled back: {describe(state)}")


def promote(args: argparse.Namespace) -> None:
    """All traffic to the canary, restart stable on the canary's Bento, then all traffic back to (the new) stable."""
    run_dir = args.run_dir
    state = State.load(run_dir)
    apply_weight(run_dir, state, 100)
    stop_backend(state.stable)
    state.stable = start_backend(run_dir, "stable", state.canary.bento, state.env["canary"])
    state.env["stable"] = state.env["canary"]
    state.save(run_dir)
    wait_ready(state.stable, "stable", run_dir)
    apply_weight(run_dir, state, 0)  # nginx reconnects to the new stable port on reload
    print(f"promoted: {describe(state)}")


def status(args: argparse.Namespace) -> None:
    state = State.load(args.run_dir)
    print(f"http://127.0.0.1:{state.listen_port}: {describe(state)}")
    for track in TRACKS:
        backend: Backend = getattr(state, track)
        try:
            ready = httpx.get(f"http://127.0.0.1:{backend.port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            ready = False
        print(f"  {track}: {backend.bento} on :{backend.port}, pid {backend.pid}, {'ready' if ready else 'NOT READY'}")


def stop(args: argparse.Namespace) -> None:
    run_dir = args.run_dir
    state = State.load(run_dir)
    if (run_dir / "nginx.pid").exists():
        nginx(run_dir, "-s", "quit")  # graceful
    for track in TRACKS:
        stop_backend(getattr(state, track))
    (run_dir / "state.json").unlink()
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
        ("stop", stop, "stop nginx and both servers"),
    ):
        commands.add_parser(name, help=text).set_defaults(command=command)
    args = parser.parse_args(argv)
    args.run_dir = args.run_dir.resolve()
    args.command(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
