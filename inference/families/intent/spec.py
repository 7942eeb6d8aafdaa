"""The intent family's registration."""

from inference.families.registry import FamilySpec
from inference.monitoring.objectives import LatencyObjective

SPEC = FamilySpec(
    name="intent",
    family="inference.families.intent.family:IntentFamily",
    objectives=(
        LatencyObjective("intent", "single", 5.0, "classic", source="intent requirement: P95 < 5 ms"),
        LatencyObjective("intent", "single", 25.0, "ensemble", source="dual-mode requirement: ensemble P95 <= 25 ms"),
        LatencyObjective("intent", "batch", 100.0, source="intent requirement: 100 texts in < 100 ms"),
    ),
    cache_hit_ratio=0.60,  # the caching requirement: intent >= 60%
    protocol="inference.http.oip.models:IntentModels",
    importer="inference.families.intent.importers:import_intent_models",
    import_flags=("verticals",),
    trainer="train.intent:TRAINER",  # python -m train intent (not part of the served image)
)
