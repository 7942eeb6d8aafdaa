"""What an explanation costs: the skills scorer with and without `explain`, in-process (no HTTP).

    .venv/bin/python -m loadtests.explain_bench [--version v1.0.0] [--repeat 1000]

Needs the skill models in the model store ($BENTOML_HOME). Prints microseconds per single request (sequential)
and per 100-item batch, each without and with explanations, and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time

from inference.families.skills.family import load_skill_models
from inference.families.skills.scorer import SkillsScorer
from inference.schemas import SkillInferenceRequest
from loadtests.latency import request_bodies
from train.data.catalogue import SKILLS


async def microseconds(call, repeat: int) -> float:
    for _ in range(min(50, repeat)):
        await call()
    started = time.perf_counter()
    for _ in range(repeat):
        await call()
    return (time.perf_counter() - started) / repeat * 1e6


async def measure(scorer: SkillsScorer, repeat: int) -> list[tuple[str, float, float]]:
    plain = [SkillInferenceRequest.model_validate(body) for body in request_bodies(200, seed=1)]
    explained = [request.model_copy(update={"explain": True}) for request in plain]

    def cycling(requests: list[SkillInferenceRequest]):
        upcoming = itertools.cycle(requests)
        return lambda: scorer.score_many([next(upcoming)])

    batch, explained_batch = plain[:100], explained[:100]
    batches = max(repeat // 20, 5)
    return [
        ("single request", await microseconds(cycling(plain), repeat), await microseconds(cycling(explained), repeat)),
        (
            "batch of 100 items",
            await microseconds(lambda: scorer.score_many(batch), batches),
            await microseconds(lambda: scorer.score_many(explained_batch), batches),
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", default="v1.0.0")
    parser.add_argument("--repeat", type=int, default=1000)
    args = parser.parse_args(argv)
    scorer = SkillsScorer(load_skill_models(dict.fromkeys(SKILLS, args.version)))
    try:
        rows = asyncio.run(measure(scorer, args.repeat))
    finally:
        scorer.close()
    print("| call | without (µs) | with explanations (µs) | ratio |\n|---|---|---|---|")
    for name, without, with_explanation in rows:
        print(f"| {name} | {without:.0f} | {with_explanation:.0f} | {with_explanation / without:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
