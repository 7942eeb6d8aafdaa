"""The HTTP API's paths and headers: one place for the service's routes and the clients' calls."""

from inference.families.intent.variants import PREFERENCE_HEADER

SKILLS_INFER_ROUTE = "/api/v1/skills/infer"
SKILLS_BATCH_ROUTE = "/api/v1/skills/infer/batch"
SKILLS_MODELS_ROUTE = "/api/v1/skills/models"
CLASSIFY_ROUTE = "/api/classify"
CLASSIFY_BATCH_ROUTE = "/api/classify/batch"
ENSEMBLE_ROUTE = "/api/v2/classify/ensemble"
TEXTPAIR_ROUTE = "/predict"
RATINGS_ROUTE = "/api/v1/monitoring/ratings"
INTENT_FEEDBACK_ROUTE = "/api/v1/monitoring/feedback/intent"
TEXTPAIR_FEEDBACK_ROUTE = "/api/v1/monitoring/feedback/textpair"
ACCURACY_ROUTE = "/api/v1/monitoring/accuracy"
MODELS_ROUTE = "/api/v1/models"
HEALTH_ROUTE = "/health"
READY_ROUTE = "/readyz"
MODEL_INFO_ROUTE = "/model_info"
DRIFT_ROUTE = "/api/v1/monitoring/drift"
CORRELATION_ROUTE = "/api/v1/monitoring/correlation"
DASHBOARD_ROUTE = "/dashboard"

# Request headers: the intent variant a caller asks for (PREFERENCE_HEADER, the intent family's), and a model
# version forced for one request; the version header's first name is still read, and deprecated.
VERSION_HEADER = "X-Model-Version"
DEPRECATED_VERSION_HEADER = "X-Model-Variant"
__all__ = ["PREFERENCE_HEADER"]
