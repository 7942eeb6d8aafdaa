"""What one worker of a server serving one family imports and costs at start, per family, in fresh processes.

    python -m loadtests.worker_start                 # each built-in family alone, then all of them (~1 min)

For each configuration a child process does what a worker does (imports service.py, builds the app with the
family's models from the model store) and reports: seconds importing service.py, seconds building the app
(model libraries imported and models loaded), which model libraries it imported (module counts), whether
scikit-learn's text stack is among them, and the process's peak RSS. Needs the models in the store.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from loadtests.stack_cost import child_figures

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = ("xgboost", "onnxruntime", "sklearn", "scipy", "pandas")
CONFIGURATIONS = {"skills": '["skills"]', "intent": '["intent"]', "textpair": '["textpair"]', "all": ""}


def _child() -> dict[str, object]:
    import resource

    started = time.perf_counter()
    import service  # noqa: F401  (what `bentoml serve` imports in every worker)

    imported = time.perf_counter()
    from inference.app import build
    from inference.monitoring.metrics import PrometheusMetrics
    from inference.settings import get_settings

    build(get_settings(), metrics=PrometheusMetrics())
    built = time.perf_counter()
    modules = {name: sum(1 for module in sys.modules if module.split(".")[0] == name) for name in LIBRARIES}
    return {
        "import_s": imported - started,
        "build_s": built - imported,
        "modules": {name: count for name, count in modules.items() if count},
        "text_stack": any(module.startswith("sklearn.feature_extraction") for module in sys.modules),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        sys.path.insert(0, str(PROJECT_ROOT))
        print(json.dumps(_child()))
        return 0
    print(
        "| families | import service.py, s | build the app, s | model libraries imported (modules) | text stack | peak RSS, MiB |"
    )
    print("|---|---|---|---|---|---|")
    for name, families in CONFIGURATIONS.items():
        figures = child_figures("loadtests.worker_start", [], {"INFERENCE_FAMILIES": families} if families else {})
        libraries = ", ".join(f"{library} {count}" for library, count in figures["modules"].items())
        print(
            f"| {name} | {figures['import_s']:.2f} | {figures['build_s']:.2f} | {libraries} | "
            f"{'yes' if figures['text_stack'] else 'no'} | {figures['peak_rss_mib']:.0f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
