"""The in-process limit: the service's scoring path called directly in Python, no HTTP.

    python -m loadtests.inprocess [--version v1.0.0]

Needs the skill models in the model store ($BENTOML_HOME). Prints microseconds per call for the booster path
(1 and 100 rows) and for the skills scorer (sequential single requests, and concurrent ones that the adaptive
batcher coalesces).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable

import numpy as np

from inference.families.skills.family import load_skill_models
from inference.families.skills.scorer import SkillsScorer
from inference.families.skills.scoring import score_rows
from inference.schemas import SkillInferenceRequest
from loadtests.latency import request_bodies
from train.data.catalogue import SKILLS


def per_call_us(function: Callable[[], object], repeat: int) -> float:
    function()
    started = time.perf_counter()
    for _ in range(repeat):
        function()
    return (time.perf_counter() - started) / repeat * 1e6


async def scorer_us(scorer: SkillsScorer, requests: list[SkillInferenceRequest], total: int) -> tuple[float, float]:
    for request in requests[:50]:
        await scorer.score_many([request])
    started = time.perf_counter()
    for i in range(total):
        await scorer.score_many([requests[i % len(requests)]])
    sequential = (time.perf_counter() - started) / total * 1e6
    started = time.perf_counter()
    await asyncio.gather(*(scorer.score_many([requests[i % len(requests)]]) for i in range(total)))
    concurrent = (time.perf_counter() - started) / total * 1e6
    return sequential, concurrent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", default="v1.0.0")
    args = parser.parse_args(argv)
    models = load_skill_models(dict.fromkeys(SKILLS, args.version))
    model = models["communication"]
    one = model.imputation_defaults[None, :]
    hundred = np.repeat(one, 100, axis=0)
    requests = [SkillInferenceRequest.model_validate(body) for body in request_bodies(200, seed=1)]
    scorer = SkillsScorer(models)
    sequential, concurrent = asyncio.run(scorer_us(scorer, requests, 2000))
    scorer.close()
    print("| path | µs per call |")
    print("|---|---|")
    print(f"| score_rows, 1 row | {per_call_us(lambda: score_rows(model, one), 2000):.0f} |")
    print(f"| score_rows, 100 rows | {per_call_us(lambda: score_rows(model, hundred), 500):.0f} |")
    print(f"| SkillsScorer.score_many, one request at a time | {sequential:.0f} |")
    print(f"| SkillsScorer.score_many, 2000 concurrent (batched), per request | {concurrent:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
