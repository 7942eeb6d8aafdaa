"""What the text-pair features cost per pair: a typical demo pair against adversarial pairs at the maximum text
length, the quadratic reference implementation (the one the stored models were trained with) against the current
one, which computes the same values.

    .venv/bin/python -m loadtests.pair_features_bench [--chars 2000] [--repeat 3] [--typical-pairs 1000]

Prints milliseconds per pair of `lexical_features` and of the full `PairFeaturizer.transform` (fitted on generated
pairs; one call over all typical pairs, or over two copies of an adversarial pair, so the transform's fixed cost
of about 1 ms per call is shared), each the best of --repeat runs; each pair's time against the typical pair's, the
speed-up over the reference (lexical, transform), and the worst pair against the typical one. The adversarial
pairs and the reference implementation are those of tests/test_pair_features.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from functools import partial
from unittest import mock

from inference.families.textpair import features as pair_features
from inference.families.textpair.features import PairFeaturizer, lexical_features
from inference.schemas import MAX_TEXT_CHARS_DEFAULT
from tests.test_pair_features import adversarial_pairs, reference_lexical_features
from train.data.pairs import generate_pairs

Pair = tuple[str, str]
ADVERSARIAL_BATCH = 2  # copies of an adversarial pair per call, so the transform's fixed cost is shared


def milliseconds(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1e3


def featurize_each(lexical: Callable[[str, str], list[float]], pairs: list[Pair]) -> list[list[float]]:
    return [lexical(*pair) for pair in pairs]


def pair_costs(pairs: list[Pair], featurizer: PairFeaturizer, repeat: int) -> dict[str, float]:
    """Milliseconds per pair over `pairs`: lexical features and the full transform, reference and current.

    The implementations take turns within each run, so a busy machine slows both alike; the best run counts.
    """
    runs: dict[str, list[float]] = {}
    for _ in range(repeat):
        for name, lexical in (("reference", reference_lexical_features), ("current", lexical_features)):
            runs.setdefault(f"lexical {name}", []).append(milliseconds(partial(featurize_each, lexical, pairs)))
            # The fitted featurizer calls the module's lexical_features, as a stored model does.
            with mock.patch.object(pair_features, "lexical_features", lexical):
                runs.setdefault(f"transform {name}", []).append(milliseconds(partial(featurizer.transform, pairs)))
    return {column: min(times) / len(pairs) for column, times in runs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chars", type=int, default=MAX_TEXT_CHARS_DEFAULT, help="length of the adversarial texts")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is kept")
    parser.add_argument("--typical-pairs", type=int, default=1000, help="generated demo pairs for the typical cost")
    args = parser.parse_args(argv)
    featurizer = PairFeaturizer().fit(generate_pairs(2000, seed=1).pairs)
    typical = pair_costs(generate_pairs(args.typical_pairs, seed=5).pairs, featurizer, args.repeat)
    rows = [("typical demo pair", typical)]
    for kind, pair in adversarial_pairs(args.chars).items():
        rows.append(
            (
                f"{kind} ({len(pair[0])}/{len(pair[1])} chars)",
                pair_costs([pair] * ADVERSARIAL_BATCH, featurizer, args.repeat),
            )
        )
    columns = ["lexical reference", "lexical current", "transform reference", "transform current"]
    print("| pair | " + " | ".join(f"{column} (ms)" for column in columns) + " | current / typical | speed-up |")
    print("|---" * (len(columns) + 3) + "|")
    for name, costs in rows:
        cells = " | ".join(f"{costs[column]:.3f}" for column in columns)
        against_typical = ", ".join(f"{costs[column] / typical[column]:.0f}x" for column in columns[1::2])
        speedup = ", ".join(f"{costs[old] / costs[new]:.1f}x" for old, new in (columns[:2], columns[2:]))
        print(f"| {name} | {cells} | {against_typical} | {speedup} |")
    for column in columns:
        worst = max(costs[column] for _, costs in rows)
        print(f"worst / typical, {column}: {worst:.3f} / {typical[column]:.3f} ms = {worst / typical[column]:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
