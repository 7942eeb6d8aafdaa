"""Request and response models of the HTTP API, shared by the service and the clients."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

STUDENT_ID_MAX_LENGTH = 128
# Identifiers are stored and logged: no control characters (a NUL cannot be stored in PostgreSQL text at all).
IDENTIFIER_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]+$"
SKILL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")  # a skill's model is `skill-<name>` in the store
MAX_ITEMS_DEFAULT = 1000  # INFERENCE_MAX_BATCH_ITEMS's default
MAX_RATINGS = 1000  # teacher ratings per request: fixed, not a setting
MAX_TEXT_CHARS_DEFAULT = 2000  # INFERENCE_MAX_TEXT_CHARS's default
SATISFACTION_MIN, SATISFACTION_MAX = 1, 10  # the dual-mode requirement's user satisfaction scale

# Constraints the service checks itself (so that a refusal names the field in the API's error shape, and one bad
# item of a batch does not refuse the others), stated in the OpenAPI document for clients and for API fuzzing.
TEXT_SCHEMA = {"minLength": 1, "maxLength": MAX_TEXT_CHARS_DEFAULT, "pattern": r"\S"}
# The skills and their features are the served models' own (GET /api/v1/skills/models, docs/features.md): the
# document states their shape, and the service checks them per version.
SKILL_SCHEMA = {"pattern": SKILL_NAME.pattern}
FEATURES_SCHEMA = {"minProperties": 1, "additionalProperties": {"type": "number"}}


class SkillInferenceRequest(BaseModel):
    student_id: str = Field(min_length=1, max_length=STUDENT_ID_MAX_LENGTH, pattern=IDENTIFIER_PATTERN)
    skill: str = Field(
        description="A skill this server serves; see GET /api/v1/skills/models.", json_schema_extra=SKILL_SCHEMA
    )
    # Values are validated per feature by the service (number, finite, within the model's range) so that the
    # error names the feature, and so that one bad item of a batch does not reject the others.
    features: dict[str, Any] = Field(
        description="Feature name to number: the served model's features (GET /api/v1/skills/models, "
        "docs/features.md).",
        json_schema_extra=FEATURES_SCHEMA,
    )
    explain: bool = Field(
        False,
        description="Also return this prediction's top feature contributions (TreeSHAP); see docs/explanations.md.",
    )


class FeatureImportance(BaseModel):
    feature: str
    importance: float


class FeatureContribution(BaseModel):
    feature: str
    value: float = Field(description="The value the model used: the one given, or the imputed training median.")
    contribution: float = Field(description="Its contribution to the margin (log-odds); positive raises the score.")


class Explanation(BaseModel):
    """Why this score: TreeSHAP contributions to the model's margin, bias + sum(contributions) + rest = margin."""

    bias: float = Field(description="The model's expected margin (log-odds) over its training data.")
    contributions: list[FeatureContribution] = Field(description="The 5 largest by magnitude, largest first.")
    rest: float = Field(description="The sum of the other features' contributions.")
    margin: float = Field(description="The model's log-odds for this row; score = 1 / (1 + exp(-margin)).")


class SkillInferenceResult(BaseModel):
    student_id: str
    skill: str
    score: float = Field(ge=0, le=1, description="Probability of the high-skill class.")
    confidence: float = Field(ge=0, le=1, description="|2*score - 1|: 0 at the decision boundary, 1 far from it.")
    feature_importance: list[FeatureImportance]
    model_version: str
    imputed_features: list[str]
    ignored_features: list[str]
    # Left out of the answer unless asked for. `exclude_if` keeps serialisation in pydantic's core: the wrap
    # serializer it replaces cost 1.7 ms per 100-item batch answer, this 0.5 ms.
    explanation: Explanation | None = Field(
        None, description='Only with "explain": true; absent otherwise.', exclude_if=lambda value: value is None
    )
    cached: bool = Field(False, description="True when the answer came from the result cache.")


class ErrorDetail(BaseModel):
    code: str
    message: str


class SkillInferenceFailure(BaseModel):
    student_id: str
    skill: str
    error: ErrorDetail


class SkillBatchRequest(BaseModel):
    items: list[SkillInferenceRequest] = Field(
        description="1 to 1000 items (INFERENCE_MAX_BATCH_ITEMS).",
        json_schema_extra={"minItems": 1, "maxItems": MAX_ITEMS_DEFAULT},
    )
    explain: bool = Field(False, description="Explain every item (an item may also ask for itself).")


class SkillBatchResponse(BaseModel):
    results: list[SkillInferenceResult | SkillInferenceFailure]
    succeeded: int
    failed: int


class FeatureInfo(BaseModel):
    name: str
    imputation_default: float = Field(description="The value used when a request leaves the feature out.")
    unit: str | None = None
    minimum: float | None = Field(None, description="Values below it are refused; none: no lower bound.")
    maximum: float | None = Field(None, description="Values above it are refused; none: no upper bound.")
    description: str | None = None


class SkillModelInfo(BaseModel):
    skill: str
    served_version: str
    available_versions: list[str]
    trained_at: str | None
    training_data_hash: str | None
    metrics: dict[str, float]
    feature_names: list[str] = Field(description="The model's features in its column order (the OIP input order).")
    features: list[FeatureInfo] = Field(default_factory=list, description="Each feature's schema, in that order.")


class SkillModelsResponse(BaseModel):
    models: list[SkillModelInfo]


# --- intent family -------------------------------------------------------------------------------------------


class IntentRequest(BaseModel):
    text: str = Field(
        description="The query text; not empty, at most INFERENCE_MAX_TEXT_CHARS characters.",
        json_schema_extra=TEXT_SCHEMA,
    )
    user_id: str | None = Field(
        None,
        max_length=STUDENT_ID_MAX_LENGTH,
        pattern=IDENTIFIER_PATTERN,
        description="When given, the variant is sticky for this caller.",
    )


class IntentBatchRequest(BaseModel):
    texts: list[str] = Field(
        description="1 to 1000 texts (INFERENCE_MAX_BATCH_ITEMS), answered in order.",
        json_schema_extra={"minItems": 1, "maxItems": MAX_ITEMS_DEFAULT, "items": {"type": "string", **TEXT_SCHEMA}},
    )
    user_id: str | None = Field(None, max_length=STUDENT_ID_MAX_LENGTH, pattern=IDENTIFIER_PATTERN)


class VerticalScore(BaseModel):
    vertical: str
    score: float = Field(ge=0, le=1)


class IntentResult(BaseModel):
    intent: str
    confidence: float = Field(ge=0, le=1, description="Probability of the answered intent.")
    verticals: list[VerticalScore] = Field(description="Verticals detected (score over the vertical's threshold).")
    variant: str = Field(description="classic, ensemble, or default (the configured answer when no model could).")
    model_version: str | None = Field(description="Version of the model that answered; null for the default.")
    fallback: bool = Field(
        description="True when the chosen variant failed or was too slow and another answered, or when no model "
        "could and the default answered."
    )
    cached: bool = Field(False, description="True when the answer came from the result cache.")
    fallback_reason: str | None = Field(
        None,
        description="Why a fallback answered: ensemble_timeout, ensemble_overloaded, ensemble_error, "
        "ensemble_unreachable (its own service cannot be reached, e.g. at zero replicas), ensemble_unavailable "
        "(its service refused: starting or overloaded), or default_answer; null otherwise.",
    )


class IntentFailure(BaseModel):
    index: int
    error: ErrorDetail


class IntentBatchResponse(BaseModel):
    results: list[IntentResult | IntentFailure]
    succeeded: int
    failed: int


# --- text-pair family ----------------------------------------------------------------------------------------


class TextPairRequest(BaseModel):
    text1: str = Field(
        description="Not empty, at most INFERENCE_MAX_TEXT_CHARS characters.", json_schema_extra=TEXT_SCHEMA
    )
    text2: str = Field(
        description="Not empty, at most INFERENCE_MAX_TEXT_CHARS characters.", json_schema_extra=TEXT_SCHEMA
    )


class ModelRef(BaseModel):
    name: str
    version: str


class TextPairResult(BaseModel):
    prediction: int = Field(description="1 when the two texts mean the same, else 0.")
    label: str = Field(description="paraphrase or different.")
    confidence: float = Field(ge=0, le=1, description="Probability of the predicted class.")
    model: ModelRef
    timestamp: str = Field(description="When the answer was made, ISO 8601 UTC.")
    cached: bool = Field(False, description="True when the answer came from the result cache.")


class TextPairFailure(BaseModel):
    index: int
    error: ErrorDetail


class TextPairModelInfo(BaseModel):
    name: str
    version: str
    type: str
    feature_count: int
    features: list[str]
    metrics: dict[str, float]
    trained_at: str | None


# --- all families --------------------------------------------------------------------------------------------


class ServedModel(BaseModel):
    name: str
    version: str


class RouteInfo(BaseModel):
    stable: str = Field(description="The version a rollback sends all traffic to.")
    weights: dict[str, float] = Field(description="Share of traffic per version (sticky per caller id).")


class FamilyModels(BaseModel):
    family: str
    loaded: bool
    models: list[ServedModel]
    route: RouteInfo | None = None
    error: str | None = Field(
        None,
        description="Why the family is not loaded: only in the admin detail of /health (?detail=true with an admin "
        "token); null elsewhere, as the reason may name files and hosts.",
    )


class ModelsResponse(BaseModel):
    families: list[FamilyModels]


class ControlStatus(BaseModel):
    # The admin detail carries whatever else the worker reports about its control state.
    model_config = ConfigDict(extra="allow")

    store: str = Field(description="Where the admin changes live: file (this server), postgresql or sqlite.")
    revision: int | None = Field(description="Revision of the control state this worker applied last.")
    reachable: bool = Field(description="False when the store did not answer the last look (about once a second).")
    unreachable_for_s: float | None = Field(
        None, description="Admin detail only: seconds since the store last answered; null when it does."
    )
    error: str | None = Field(None, description="Admin detail only: why the store did not answer; null when it does.")


class HealthResponse(BaseModel):
    """Public: the status, the models and the route per family, the control store's kind, revision and whether it
    answers. With `?detail=true` and an admin bearer token, also the reasons: why a family is not loaded, why the
    control store does not answer and since when."""

    status: str = Field(description="ok when every enabled family is loaded, else unavailable.")
    timestamp: str
    families: list[FamilyModels]
    control: ControlStatus = Field(
        description="The control state (routes) this worker follows; a worker that cannot reach its store keeps "
        "the revision it applied last and keeps serving (status stays ok)."
    )


# --- monitoring ----------------------------------------------------------------------------------------------


class TeacherRating(BaseModel):
    student_id: str = Field(min_length=1, max_length=STUDENT_ID_MAX_LENGTH, pattern=IDENTIFIER_PATTERN)
    skill: str = Field(json_schema_extra=SKILL_SCHEMA)
    rating: float = Field(ge=1, le=5, description="The teacher's rating on the 1-5 scale.")
    rated_at: datetime = Field(description="When the teacher rated, ISO 8601; without a zone it is taken as UTC.")


class RatingsRequest(BaseModel):
    ratings: list[TeacherRating] = Field(
        description=f"1 to {MAX_RATINGS} ratings.", json_schema_extra={"minItems": 1, "maxItems": MAX_RATINGS}
    )


class RatingsResponse(BaseModel):
    stored: int = Field(description="Ratings stored.")
    rejected: list[int] = Field(
        default_factory=list,
        description="Indexes of ratings the database refused for their data; kept aside (rejected_rows), the others "
        "stored.",
    )


class RatedAnswer(BaseModel):
    """What a caller made of the answer it was shown: the variant that gave it and how satisfied the caller was.
    Feedback items with these fields give the go/no-go matrix its satisfaction, per variant."""

    variant: Literal["classic", "ensemble"] | None = Field(
        None,
        description="The intent variant whose answer the caller was shown (the answer's `variant`); required with "
        "`satisfaction`.",
    )
    satisfaction: int | None = Field(
        None,
        ge=SATISFACTION_MIN,
        le=SATISFACTION_MAX,
        strict=True,  # 7, not 7.5 or "7"
        description=f"The caller's satisfaction with that answer, {SATISFACTION_MIN} (worst) to {SATISFACTION_MAX} "
        "(best).",
    )


class LabelledQuery(RatedAnswer):
    text: str = Field(description="A query the service may have classified.", json_schema_extra=TEXT_SCHEMA)
    intent: str = Field(description="Its true intent: one of the intents the served models answer.")


class LabelledPair(BaseModel):
    text1: str = Field(json_schema_extra=TEXT_SCHEMA)
    text2: str = Field(json_schema_extra=TEXT_SCHEMA)
    same: bool = Field(description="Whether the two texts truly mean the same.")


class IntentFeedbackRequest(BaseModel):
    items: list[LabelledQuery] = Field(
        description=f"1 to {MAX_RATINGS} labelled queries.", json_schema_extra={"minItems": 1, "maxItems": MAX_RATINGS}
    )


class TextPairFeedbackRequest(BaseModel):
    items: list[LabelledPair] = Field(
        description=f"1 to {MAX_RATINGS} labelled pairs.", json_schema_extra={"minItems": 1, "maxItems": MAX_RATINGS}
    )


class FeedbackResponse(BaseModel):
    stored: int = Field(description="Labelled items stored.")
    rejected_rows: int = Field(
        0, description="Rows (an item as one version and variant answered it) the database refused; kept aside."
    )
    scored_by: list[str] = Field(
        description="The versions (and intent variants) that answered them, as version/variant."
    )


class VariantAccuracy(BaseModel):
    family: str
    model_version: str
    variant: str = Field(description="classic or ensemble (intent); empty for the text pair.")
    items: int = Field(description="Labelled items in the window this version and variant answered.")
    accuracy: float | None = Field(description="Share answered right; null below the minimum of items.")
    rated: int = Field(0, description="Of them, the items whose caller was shown this variant's answer and rated it.")
    satisfaction: float | None = Field(
        None, description="Their mean satisfaction (1-10); null below the minimum of items."
    )


class EnsembleDecision(BaseModel):
    model_version: str
    classic_accuracy: float | None
    ensemble_accuracy: float | None
    improvement: float | None = Field(description="(ensemble - classic) / classic accuracy on the same items.")
    required: float = Field(description="The dual-mode requirement's minimum improvement for going ahead.")
    decision: str = Field(description="go, no-go, or not enough feedback (fewer than the minimum of items).")


class MatrixCriterion(BaseModel):
    name: str = Field(description="accuracy, satisfaction, cost or stability.")
    value: float | None = Field(
        description="accuracy: (ensemble - classic) / classic accuracy; satisfaction: the mean (1-10) of callers "
        "shown the ensemble; cost: ensemble / classic cost per request - 1; stability: the share of the answers the "
        "ensemble was chosen for that it gave itself (cost and stability: this worker's, since it started). Null "
        "without data."
    )
    minimum: float
    target: float
    weight: float
    score: float | None = Field(
        description="0 up to the minimum, 1 from the target on, linear between; null without data."
    )


class GoNoGoMatrix(BaseModel):
    model_version: str
    criteria: list[MatrixCriterion]
    score: float | None = Field(description="The criteria's scores, weighted; null while one has no data.")
    proceed_above: float
    decision: str = Field(description="proceed (score above proceed_above), hold, or not enough data.")


class AccuracyResponse(BaseModel):
    computed_at: datetime = Field(
        description="When these figures were computed (every 15 s): a read answers from the latest, and from the "
        "last ones it has while the database is away."
    )
    window_days: float
    min_items: int
    accuracy: list[VariantAccuracy]
    ensemble: list[EnsembleDecision] = Field(description="The go/no-go rule of the ensemble, per intent version.")
    go_no_go: list[GoNoGoMatrix] = Field(
        default_factory=list,
        description="The dual-mode requirement's go/no-go matrix (accuracy, satisfaction, cost, stability), per "
        "intent version with feedback or loaded; see docs/monitoring.md.",
    )


class ModelDrift(BaseModel):
    model: str
    model_version: str
    window: int = Field(description="Live observations behind the figures.")
    psi: dict[str, float] = Field(description="Population stability index per feature and for `score`.")
    ks: dict[str, float] = Field(description="Kolmogorov-Smirnov distance per feature and for `score`.")
    alert: bool = Field(description="True when any PSI is above the threshold.")


class DriftResponse(BaseModel):
    psi_alert_above: float
    min_observations: int
    models: list[ModelDrift]


class SkillCorrelation(BaseModel):
    skill: str
    model_version: str
    pairs: int
    pearson_r: float | None = Field(description="Null with too few pairs or no variance.")
    alert: bool
    source: str = Field(
        "served", description="served: the scores the API gave; nightly: the batch scorer's skill_assessments."
    )


class CorrelationResponse(BaseModel):
    computed_at: datetime = Field(
        description="When these figures were computed (every 15 s): a read answers from the latest, and from the "
        "last ones it has while the database is away."
    )
    window_days: float
    alert_below: float
    min_pairs: int
    correlations: list[SkillCorrelation]
