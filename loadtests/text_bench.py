"""The text families' workloads for the benchmark harness: intent (classic, ensemble, the default split, batches
of 100 texts) and the text pair, against the full service with its result cache off (so the models answer) and
the careful FastAPI app serving the same pipelines (`loadtests/peers/fastapi_text.py`); judged against the
requirements' own targets, with the peer's QPS beside them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from train.data.pairs import generate_pairs
from train.data.queries import generate_queries

PREFERENCE = "X-Model-Preference"


@dataclass(frozen=True)
class TextWorkload:
    name: str
    connections: int
    lines: str  # which request file drives it (keys of `write_text_request_files`)
    batch_every: int = 0


CLASSIC_1 = "classify, classic, 1 client"
CLASSIC_16 = "classify, classic, 16 clients"
SPLIT_16 = "classify, default split (90/10), 16 clients"
ENSEMBLE_1 = "classify, ensemble, 1 client"
BATCH_CLASSIC = "classify/batch 100 texts, classic, 1 client"
BATCH_ENSEMBLE = "classify/batch 100 texts, ensemble, 1 client"
PAIR_1 = "predict (text pair), 1 client"
PAIR_16 = "predict (text pair), 16 clients"
TEXT_WORKLOADS = [
    TextWorkload(CLASSIC_1, 1, "classic"),
    TextWorkload(CLASSIC_16, 16, "classic"),
    TextWorkload(SPLIT_16, 16, "split"),
    TextWorkload(ENSEMBLE_1, 1, "ensemble"),
    TextWorkload(BATCH_CLASSIC, 1, "batch_classic"),
    TextWorkload(BATCH_ENSEMBLE, 1, "batch_ensemble"),
    TextWorkload(PAIR_1, 1, "pairs"),
    TextWorkload(PAIR_16, 16, "pairs"),
]


def write_text_request_files(work: Path) -> dict[str, Path]:
    """Generated queries and pairs as wrk request lines: "PATH<TAB>BODY[<TAB>Header: value]"."""
    queries = generate_queries(500, seed=4242).texts
    pairs = generate_pairs(500, seed=4242).pairs
    batches = [queries[start : start + 100] for start in range(0, 500, 100)]

    def lines(entries: list[str]) -> str:
        return "\n".join(entries) + "\n"

    contents = {
        "classic": [f"/api/classify\t{json.dumps({'text': q})}\t{PREFERENCE}: classic" for q in queries],
        "ensemble": [f"/api/classify\t{json.dumps({'text': q})}\t{PREFERENCE}: ensemble" for q in queries],
        "split": [f"/api/classify\t{json.dumps({'text': q, 'user_id': f'u{i}'})}" for i, q in enumerate(queries)],
        "batch_classic": [f"/api/classify/batch\t{json.dumps({'texts': b})}\t{PREFERENCE}: classic" for b in batches],
        "batch_ensemble": [f"/api/classify/batch\t{json.dumps({'texts': b})}\t{PREFERENCE}: ensemble" for b in batches],
        "pairs": [f"/predict\t{json.dumps({'text1': a, 'text2': b})}" for a, b in pairs],
    }
    files = {}
    for key, entries in contents.items():
        files[key] = work / f"text-{key}.txt"
        files[key].write_text(lines(entries))
    return files
