"""The HTTP API's paths and headers: one place for the service's routes and the clients' calls."""

SKILLS_INFER_ROUTE = "/api/v1/skills/infer"
SKILLS_BATCH_ROUTE = "/api/v1/skills/infer/batch"
SKILLS_MODELS_ROUTE = "/api/v1/skills/models"
CLASSIFY_ROUTE = "/api/classify"
CLASSIFY_BATCH_ROUTE = "/api/classify/batch"
ENSEMBLE_ROUTE = "/api/v2/classify/ensemble"
TEXTPAIR_ROUTE = "/predict"
RATINGS_ROUTE = "/api/v1/monitoring/ratings"
MODELS_ROUTE = "/api/v1/models"
HEALTH_ROUTE = "/health"
READY_ROUTE = "/readyz"

# Request headers: the intent variant a caller asks for, and a model version forced for one request.
PREFERENCE_HEADER = "X-Model-Preference"
VERSION_HEADER = "X-Model-Variant"
