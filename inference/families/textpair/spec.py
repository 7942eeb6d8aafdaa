"""The text-pair family's registration."""

from inference.families.registry import FamilySpec
from inference.monitoring.objectives import LatencyObjective

SPEC = FamilySpec(
    name="textpair",
    family="inference.families.textpair.family:TextPairFamily",
    objectives=(LatencyObjective("textpair", "single", 5.0, source="text-pair requirement: P95 < 5 ms"),),
    protocol="inference.http.oip.models:TextPairModels",
    importer="inference.families.textpair.importers:import_textpair_model",
    import_flags=("positive_label",),
    trainer="train.textpair:TRAINER",  # python -m train textpair (not part of the served image)
    models_route="/model_info",
)
