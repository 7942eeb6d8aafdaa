"""The registration: everything the service needs to know of the family, by name."""

from inference.families.registry import FamilySpec, JsonRoute
from inference.monitoring.objectives import LatencyObjective

FAMILY = "toxicity"
SCORE_ROUTE = "/api/v1/toxicity/score"
BATCH_ROUTE = "/api/v1/toxicity/score/batch"

SPEC = FamilySpec(
    name=FAMILY,
    family="tests.plugins.toxicity.family:ToxicityFamily",
    default_version="v1.0.0",
    objectives=(LatencyObjective(FAMILY, "single", 5.0, source="as the other text families"),),
    cache_hit_ratio=0.5,
    protocol="tests.plugins.toxicity.protocol:ToxicityModels",
    importer="tests.plugins.toxicity.family:import_weights",
    routes=(
        JsonRoute(
            SCORE_ROUTE,
            body="tests.plugins.toxicity.schema:ToxicityRequest",
            requests="tests.plugins.toxicity.schema:one_request",
            answer="tests.plugins.toxicity.schema:ToxicityResult",
            summary="Whether a text is toxic, with the model's probability.",
        ),
        JsonRoute(
            BATCH_ROUTE,
            body="tests.plugins.toxicity.schema:ToxicityBatch",
            requests="tests.plugins.toxicity.schema:batch_requests",
            answer="tests.plugins.toxicity.schema:ToxicityBatchResponse",
            summary="Up to INFERENCE_MAX_BATCH_ITEMS texts; a bad one gets its error in its place.",
            batch=("texts", "text"),
        ),
    ),
)
