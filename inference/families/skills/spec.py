"""The skills family's registration."""

from inference.families.registry import FamilySpec, JsonRoute
from inference.monitoring.objectives import LatencyObjective

SPEC = FamilySpec(
    name="skills",
    family="inference.families.skills.family:SkillsFamily",
    objectives=(
        LatencyObjective("skills", "single", 5.0, source="skills infer P95 at 1 client"),
        LatencyObjective("skills", "oip", 5.0, source="the same scoring over the Open Inference Protocol"),
        LatencyObjective("skills", "batch", 20.0, source="skills infer/batch of 100 items P95"),
    ),
    cache_hit_ratio=0.80,  # the caching requirement: skills > 80%
    protocol="inference.families.skills.protocol:SkillModels",
    importer="inference.families.skills.importers:import_skill_models",
    import_flags=("features", "imputation"),
    trainer="train.skills:TRAINER",  # python -m train skills (not part of the served image)
    models_route="/api/v1/skills/models",
    routes=(
        JsonRoute(
            name="skills_infer",
            path="/api/v1/skills/infer",
            body="inference.schemas:SkillInferenceRequest",
            requests="inference.families.skills.requests:one",
            answer="inference.schemas:SkillInferenceResult",
            summary="Score one student on one skill (the version: X-Model-Version, else the route, sticky per student).",
            features="features",
        ),
        JsonRoute(
            name="skills_infer_batch",
            path="/api/v1/skills/infer/batch",
            body="inference.schemas:SkillBatchRequest",
            requests="inference.families.skills.requests:batch",
            answer="inference.schemas:SkillBatchResponse",
            summary="Score up to 1000 items; a bad item gets an error in its place and the others are still scored.",
            batch=("items", "item"),
            features="items[].features",
        ),
    ),
)
