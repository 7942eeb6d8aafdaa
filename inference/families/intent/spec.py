"""The intent family's registration."""

from inference.families.registry import FamilySpec, FeedbackRoute, JsonRoute
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
    protocol="inference.families.intent.protocol:IntentModels",
    importer="inference.families.intent.importers:import_intent_models",
    import_flags=("verticals",),
    trainer="train.intent:TRAINER",  # python -m train intent (not part of the served image)
    routes=(
        JsonRoute(
            name="classify",
            path="/api/classify",
            body="inference.schemas:IntentRequest",
            requests="inference.families.intent.requests:one",
            answer="inference.schemas:IntentResult",
            summary="Intent and verticals of one query, from the variant in X-Model-Preference or the configured split.",
        ),
        JsonRoute(
            name="classify_ensemble",
            path="/api/v2/classify/ensemble",
            body="inference.schemas:IntentRequest",
            requests="inference.families.intent.requests:ensemble",
            answer="inference.schemas:IntentResult",
            summary="Always the ensemble (classic answers, flagged as a fallback, when the ensemble cannot).",
        ),
        JsonRoute(
            name="classify_batch",
            path="/api/classify/batch",
            body="inference.schemas:IntentBatchRequest",
            requests="inference.families.intent.requests:batch",
            answer="inference.schemas:IntentBatchResponse",
            summary="Up to 1000 queries, answered in order by one variant; a bad text gets an error in its place.",
            batch=("texts", "text"),
        ),
    ),
    feedback=FeedbackRoute(
        name="post_intent_feedback",
        path="/api/v1/monitoring/feedback/intent",
        body="inference.schemas:IntentFeedbackRequest",
        texts="inference.families.intent.requests:labelled_texts",
        summary="Labelled queries (their true intent): answered by every loaded version and variant on arrival, "
        "stored as right or wrong, for live accuracy and the ensemble's go/no-go. Needs a ratings writer's token.",
    ),
)
