"""One error hierarchy. Each error carries a stable machine-readable `code` and the HTTP status it maps to."""

from __future__ import annotations

from http import HTTPStatus


class InferenceError(Exception):
    """Base of every error this package raises on purpose."""

    code = "internal_error"
    status = HTTPStatus.INTERNAL_SERVER_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class InvalidRequest(InferenceError):
    """The client sent something we cannot score; the message names the field and what was expected."""

    code = "invalid_request"
    status = HTTPStatus.BAD_REQUEST


class UnknownSkill(InvalidRequest):
    code = "unknown_skill"


class EmptyFeatures(InvalidRequest):
    code = "empty_features"


class InvalidFeatureValue(InvalidRequest):
    code = "invalid_feature_value"


class NoKnownFeatures(InvalidRequest):
    code = "no_known_features"


class InvalidText(InvalidRequest):
    code = "invalid_text"


class InvalidHeader(InvalidRequest):
    code = "invalid_header"


class BatchTooLarge(InvalidRequest):
    code = "batch_too_large"


class ModelsNotReady(InferenceError):
    code = "models_not_ready"
    status = HTTPStatus.SERVICE_UNAVAILABLE


class StorageUnavailable(InferenceError):
    """The database could not take a write; nothing was stored and the caller may retry."""

    code = "storage_unavailable"
    status = HTTPStatus.SERVICE_UNAVAILABLE


class ArtifactError(InferenceError):
    """A model artifact is missing, corrupt or does not match the feature catalogue."""

    code = "invalid_artifact"


class ModelVersionExists(InferenceError):
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
    code = "unsupported_database"


class SchemaMismatch(InferenceError):
    """A table in the database lacks a column the code needs and that cannot be added safely."""

    code = "schema_mismatch"
