"""The packages of `inference` form layers, each importing only from below it: the serving layer owns the family
protocol and never imports a family; families build on serving; the HTTP edge, the batch scorer and the
composition root sit on top. Read from the source (every `import`, also those inside functions), so a deferred
import is no way round it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "inference"
# Lowest first. A package may import its own modules and any package of a lower layer.
LAYERS = [
    {"errors", "logs", "progress", "faults", "sharding", "cli", "schemas", "settings"},
    {"store", "storage"},
    {"monitoring"},
    {"serving"},
    {"families"},
    {"batch", "http", "retention", "client", "importer"},
    {"app"},
]
# Imports that still run up a layer, each with why; the test fails when one is gone, so the list only shrinks.
KNOWN_UPWARD = {
    ("settings", "families"): "settings validate the intent split's variant names (families/intent/variants.py)",
    ("monitoring", "families"): "the ensemble's go/no-go rule and matrix name intent's variants (feedback, gonogo)",
    ("http", "app"): "the read routes are typed against the composition root's App",
}


def layer_of(package: str) -> int:
    return next(index for index, members in enumerate(LAYERS) if package in members)


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "inference" and len(parts) > 1 else None


def imports() -> set[tuple[str, str, str]]:
    """(importing package, imported package, file) for every import between packages of `inference`."""
    found = set()
    for path in ROOT.rglob("*.py"):
        relative = path.relative_to(ROOT)
        source = relative.parts[0].removesuffix(".py")
        if source == "__init__":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                target = package_of(name)
                if target is not None and target != source:
                    found.add((source, target, str(relative)))
    return found


def test_every_package_of_inference_has_a_layer():
    packages = {path.relative_to(ROOT).parts[0].removesuffix(".py") for path in ROOT.rglob("*.py")} - {"__init__"}
    assert packages <= set().union(*LAYERS), sorted(packages - set().union(*LAYERS))


def test_the_serving_layer_imports_no_family_and_nothing_above_it():
    upward = sorted(
        (target, where) for source, target, where in imports() if source == "serving" and layer_of(target) > 3
    )
    assert upward == []


def test_no_import_runs_from_a_lower_layer_to_a_higher_one_but_the_known_few():
    upward = {(source, target) for source, target, _ in imports() if layer_of(target) > layer_of(source)}
    assert upward - set(KNOWN_UPWARD) == set(), "a new import runs up the layers"
    assert set(KNOWN_UPWARD) - upward == set(), "an import listed in KNOWN_UPWARD is gone: take it off the list"
