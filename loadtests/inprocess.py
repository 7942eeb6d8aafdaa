"""The in-process limit: the service's scoring path called directly in Python, no HTTP.

    python -m loadtests.inprocess [--version v1.0.0]

Needs the skill models in the model store ($BENTOML_HOME). Prints microseconds per call of one skill's scoring by
rows per call, XGBoost (`Booster.inplace_predict`) against the compiled form (ONNX Runtime): requests bring few rows
per model, where the compiled form is faster; the batch scorer's chunks bring thousands; then the skills scorer as served (sequential single requests, and
concurrent ones that the adaptive batcher coalesces), with and without the compiled form.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from inference.families.skills.family import load_skill_models
from inference.families.skills.scorer import SkillsScorer
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
    if model.compiled is None or model.compiled.booster is None:
        print(f"error: {model.store_name}:{model.version} has no compiled form: re-import it", file=sys.stderr)
        return 2
    booster = model.compiled.booster
    print("| rows per call | XGBoost inplace_predict, µs | ONNX Runtime, µs | ratio |")
    print("|---|---|---|---|")
    rng = np.random.default_rng(0)
    for n in (1, 4, 16, 32, 64, 100, 256):
        rows = (model.mean + rng.normal(size=(n, len(model.feature_names))) * model.scale).astype(np.float32)
        repeat = max(50, 4000 // n)
        # Minimum of 5 runs: the machine is shared, the least disturbed run is the figure.
        xgb_us = min(per_call_us(lambda r=rows: model.booster.inplace_predict(r), repeat) for _ in range(5))
        onnx_us = min(per_call_us(lambda r=rows: booster.probabilities(r), repeat) for _ in range(5))
        print(f"| {n} | {xgb_us:.0f} | {onnx_us:.0f} | {xgb_us / onnx_us:.1f}x |")
    requests = [SkillInferenceRequest.model_validate(body) for body in request_bodies(200, seed=1)]
    print()
    print("| skills scorer, µs per request | one at a time | 2000 concurrent (batched) |")
    print("|---|---|---|")
    for label, served in (
        ("XGBoost", {skill: replace(m, compiled=None) for skill, m in models.items()}),
        ("compiled (as served)", models),
    ):
        scorer = SkillsScorer(served)
        sequential, concurrent = asyncio.run(scorer_us(scorer, requests, 2000))
        scorer.close()
        print(f"| {label} | {sequential:.0f} | {concurrent:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
