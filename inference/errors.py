"""One error hierarchy. Each error carries a stable machine-readable `code` and the HTTP status it maps to."""

from __future__ import annotations

from http import HTTPStatus


class InferenceError(Exception):
    """Base of every error this package raises on purpose."""

    code = "internal_error"
    status = HTTPStatus.INTERNAL_SERVER_ERROR
    limit: str | None = None  # the configured limit the request went over, if that is why it was refused

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}

    def body(self) -> dict[str, str]:
        """The API's error answer: `{"error": message, "code": code}`."""
        return {"error": self.message, "code": self.code}

    @classmethod
    def recorded(cls, status: int, code: str, message: str) -> InferenceError:
        """An error as a record kept it (an admin operation's outcome, read back from the control store)."""
        error = cls(message)
        error.status, error.code = HTTPStatus(status), code
        return error


class InvalidRequest(InferenceError):
    """The client sent something we cannot score; the message names the field and what was expected."""

    code = "invalid_request"
    status = HTTPStatus.BAD_REQUEST


class UnknownSkill(InvalidRequest):
    """`skill` is not a skill this server serves (the message lists them)."""

    code = "unknown_skill"


class EmptyFeatures(InvalidRequest):
    """`features` is an empty object."""

    code = "empty_features"


class InvalidFeatureValue(InvalidRequest):
    """A feature the model uses is not a finite number within its valid range; the message names it."""

    code = "invalid_feature_value"


class NoKnownFeatures(InvalidRequest):
    """None of the given features is used by the skill's model."""

    code = "no_known_features"


class InvalidText(InvalidRequest):
    """A text is empty, whitespace only, or longer than INFERENCE_MAX_TEXT_CHARS."""

    code = "invalid_text"


class TextTooLong(InvalidText):
    """A text longer than INFERENCE_MAX_TEXT_CHARS (code `invalid_text`)."""

    limit = "text_chars"


class InvalidHeader(InvalidRequest):
    """A header (X-Model-Preference, X-Model-Version) names no variant or version this server serves."""

    code = "invalid_header"


class BatchTooLarge(InvalidRequest):
    """More items in a batch than INFERENCE_MAX_BATCH_ITEMS."""

    code = "batch_too_large"
    limit = "batch_items"


class TooManyFeatures(InvalidRequest):
    """A skills item with more feature names than INFERENCE_MAX_FEATURES."""

    code = "too_many_features"
    limit = "features"


class TooManyChars(InvalidRequest):
    """More characters of text in one request than INFERENCE_MAX_REQUEST_CHARS."""

    code = "too_many_chars"
    limit = "request_chars"


class BodyTooLarge(InvalidRequest):
    """A request body larger than INFERENCE_MAX_BODY_BYTES; the rest of it is not read."""

    code = "body_too_large"
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    limit = "body_bytes"


class InvalidJson(InvalidRequest):
    """The body is not valid JSON (the message says where)."""

    code = "invalid_json"


class UnsupportedMediaType(InvalidRequest):
    """A request body whose Content-Type is not application/json."""

    code = "unsupported_media_type"
    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE


class JsonTooDeep(InvalidRequest):
    """A JSON document nested deeper than INFERENCE_MAX_JSON_DEPTH."""

    code = "json_too_deep"
    limit = "json_depth"


class Unauthorized(InferenceError):
    """A route that needs a bearer token got none, or one that is not its own."""

    code = "unauthorized"
    status = HTTPStatus.UNAUTHORIZED


class AdminDisabled(InferenceError):
    """An admin call while no INFERENCE_ADMIN_TOKEN is configured."""

    code = "admin_disabled"
    status = HTTPStatus.FORBIDDEN


class WriterDisabled(InferenceError):
    """A writing route whose tokens are not configured: it refuses everyone."""

    code = "ratings_disabled"
    status = HTTPStatus.FORBIDDEN


class ModelsNotReady(InferenceError):
    """The family's models are not loaded (see /readyz and the log); retry later or elsewhere."""

    code = "models_not_ready"
    status = HTTPStatus.SERVICE_UNAVAILABLE


class Overloaded(InferenceError):
    """The worker has as much work as it can finish in time: this request was not started; retry after the
    Retry-After header's seconds (elsewhere, when there are other replicas)."""

    code = "overloaded"
    status = HTTPStatus.SERVICE_UNAVAILABLE

    def __init__(self, message: str, *, retry_after_s: int = 1, limit: str = "queue_wait") -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.limit = limit  # concurrent_requests (the worker) or queue_wait (the family's queue)


class StorageUnavailable(InferenceError):
    """The database could not be reached; nothing was stored, and the caller may retry."""

    code = "storage_unavailable"
    status = HTTPStatus.SERVICE_UNAVAILABLE


class CacheUnavailable(InferenceError):
    """The result cache (Redis) could not carry out an explicit cache operation; the caller may retry."""

    code = "cache_unavailable"
    status = HTTPStatus.SERVICE_UNAVAILABLE


class ArtifactError(InferenceError):
    """A model artifact is missing, corrupt, or contradicts itself (its metadata, its scaler, its booster)."""

    code = "invalid_artifact"


class ModelVersionExists(InferenceError):
    """Importing a model version the store already holds."""

    code = "model_version_exists"
    status = HTTPStatus.CONFLICT


class RunInProgress(InferenceError):
    """Another batch scoring run of the same shard holds its lock."""

    code = "run_in_progress"
    status = HTTPStatus.CONFLICT


class RunSuperseded(InferenceError):
    """Another run of the same shard took over this one (its lock was lost); this run stops writing."""

    code = "run_superseded"
    status = HTTPStatus.CONFLICT


class UnsupportedDatabase(InferenceError):
    """A DATABASE_URL of a kind other than SQLite or PostgreSQL."""

    code = "unsupported_database"


class SchemaMismatch(InferenceError):
    """A table in the database lacks a column the code needs and that cannot be added safely."""

    code = "schema_mismatch"
