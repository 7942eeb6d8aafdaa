"""The text-pair family's registration."""

from inference.families.registry import FamilySpec, FeedbackRoute, JsonRoute
from inference.monitoring.objectives import LatencyObjective

SPEC = FamilySpec(
    name="textpair",
    family="inference.families.textpair.family:TextPairFamily",
    objectives=(LatencyObjective("textpair", "single", 5.0, source="text-pair requirement: P95 < 5 ms"),),
    protocol="inference.families.textpair.protocol:TextPairModels",
    importer="inference.families.textpair.importers:import_textpair_model",
    import_flags=("positive_label",),
    trainer="train.textpair:TRAINER",  # python -m train textpair (not part of the served image)
    models_route="/model_info",
    routes=(
        JsonRoute(
            name="predict",
            path="/predict",
            body="inference.schemas:TextPairRequest",
            requests="inference.families.textpair.requests:one",
            answer="inference.schemas:TextPairResult",
            summary="Whether two texts mean the same, with the model's confidence.",
        ),
    ),
    feedback=FeedbackRoute(
        name="post_textpair_feedback",
        path="/api/v1/monitoring/feedback/textpair",
        body="inference.schemas:TextPairFeedbackRequest",
        texts="inference.families.textpair.requests:labelled_texts",
        summary="Labelled text pairs (whether they truly mean the same), as the intent feedback. Needs a ratings "
        "writer's token.",
    ),
)
