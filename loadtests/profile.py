"""Where a request's CPU goes: py-spy on one worker of a real server under a wrk workload, as a flame graph and a
table of the functions that hold the most samples.

    python -m loadtests.profile                         # every profile below, into docs/flamegraphs/
    python -m loadtests.profile --only skills-batch --seconds 10

Each profile starts the service fresh (result cache off, so every request is scored), warms it up for 2 s, then
samples its processes (py-spy, 250 Hz, `--nonblocking --subprocesses`) while wrk drives the workload. Needs the demo models
in the store, wrk and py-spy (`pip install py-spy`; root, or ptrace permission).
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from loadtests.bench import FULL_SERVICE, TARGETS, Target, Workload, run_wrk, running, write_request_files
from loadtests.text_bench import write_text_request_files

PROJECT_ROOT = Path(__file__).resolve().parent.parent
OUT = PROJECT_ROOT / "docs" / "flamegraphs"
PY_SPY = Path(sys.executable).parent / "py-spy"


@dataclass(frozen=True)
class Profile:
    name: str
    target: Target
    connections: int
    files: str  # "service" (skills requests) or a text request file's key
    batch_every: int = 0


PROFILES = [
    Profile("skills-single-64", TARGETS["service"], 64, "service"),
    Profile("skills-batch", TARGETS["service"], 1, "service", batch_every=1),
    Profile("intent-classic-1", FULL_SERVICE, 1, "classic"),
    Profile("textpair-1", FULL_SERVICE, 1, "pairs"),
]


def where(frame: str) -> tuple[str, str]:
    """A collapsed-stack frame "function (/full/path.py:line)" as (where its time is counted, the function named
    with its path): a file of this project by its path, a library by its package, the standard library as one."""
    match = re.match(r"^(.*) \((.+?)(?::\d+)?\)$", frame)
    if match is None:
        return frame, frame
    function, path = match.groups()
    if path.startswith(str(PROJECT_ROOT) + "/") and "/.venv/" not in path:
        relative = path.removeprefix(str(PROJECT_ROOT) + "/")
        return relative, f"{function} ({relative})"
    if "site-packages/" in path:
        package = path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
        return package, f"{function} ({package})"
    return "Python standard library", f"{function} ({Path(path).name})"


def summarise(raw: Path, count: int = 15) -> tuple[list[tuple[float, str]], list[tuple[float, str]]]:
    """From py-spy's collapsed stacks: the share of samples whose innermost frame is in each library or project
    file (self time), and this project's functions by the share of samples they appear in (inclusive)."""
    total, own, ours = 0, collections.Counter[str](), collections.Counter[str]()
    for line in raw.read_text().splitlines():
        stack, _, text = line.rpartition(" ")
        samples = int(text)
        frames = [frame for frame in stack.split(";") if not frame.startswith("process ")]
        if not frames:
            continue
        total += samples
        own[where(frames[-1])[0]] += samples
        for name in {where(frame)[1] for frame in frames if where(frame)[0].endswith(".py")}:
            ours[name] += samples
    if not total:
        return [], []

    def shares(counter: collections.Counter[str]) -> list[tuple[float, str]]:
        return [(samples / total * 100, name) for name, samples in counter.most_common(count)]

    return shares(own), shares(ours)


def profile(entry: Profile, seconds: float, work: Path, files: dict[str, dict[str, Path]], out: Path) -> None:
    request_files = files["service"] if entry.files == "service" else {"single": files["text"][entry.files]}
    workload = Workload(entry.name, entry.connections, entry.batch_every)
    with running(entry.target, work) as (url, process, _):
        run_wrk(url, Workload("warm-up", 4, entry.batch_every), 2.0, request_files)
        svg, raw = out / f"{entry.name}.svg", work / f"{entry.name}.txt"
        sampler_command = [str(PY_SPY), "record", "--nonblocking", "-r", "250", "-d", str(int(seconds))]
        # Every worker: with one client, only the worker holding the connection serves.
        sampler_command += ["--subprocesses", "-p", str(process.pid)]
        samplers = [
            subprocess.Popen(
                [*sampler_command, "-f", kind, "-o", str(path), *(["--full-filenames"] if kind == "raw" else [])],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for kind, path in (("flamegraph", svg), ("raw", raw))
        ]
        result = run_wrk(url, workload, seconds + 1, request_files)
        for sampler in samplers:
            sampler.wait(60)
    print(
        f"\n{entry.name}: {result['qps']:.0f} QPS, P50 {result['p50']:.2f} ms, P95 {result['p95']:.2f} ms, "
        f"errors {result['errors']}; flame graph {svg}"
    )
    by_place, ours = summarise(raw)
    print("  self time (innermost frame), by library or project file:")
    for share, name in by_place:
        print(f"  {share:5.1f}%  {name}")
    print("  this project's functions, inclusive:")
    for share, name in ours:
        print(f"  {share:5.1f}%  {name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20, help="sampling time per profile (default 20)")
    parser.add_argument("--only", nargs="+", choices=[entry.name for entry in PROFILES])
    parser.add_argument("--out", type=Path, default=OUT, help=f"where the flame graphs go (default {OUT})")
    args = parser.parse_args(argv)
    for tool, hint in (("wrk", "apt-get install wrk"), (str(PY_SPY), "pip install py-spy")):
        if shutil.which(tool) is None:
            print(f"error: {tool} is not installed ({hint})", file=sys.stderr)
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="profile-"))
    files = {"service": write_request_files(work)["service"], "text": write_text_request_files(work)}
    for entry in PROFILES:
        if args.only is None or entry.name in args.only:
            profile(entry, args.seconds, work, files, args.out)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
