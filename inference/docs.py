"""Generate docs/features.md (from the catalogues), docs/configuration.md (from the settings object) and
docs/api.md (from the service's OpenAPI document and its other routes): `python -m inference.docs`. A test fails
when one is stale."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from inference.catalogue import FEATURES, SKILL_FEATURES, SKILLS
from inference.intent_catalogue import INTENTS, VERTICALS
from inference.pair_features import PAIR_FEATURES
from inference.settings import Settings

DOCS = Path(__file__).resolve().parent.parent / "docs"
FEATURES_DOC = DOCS / "features.md"
CONFIGURATION_DOC = DOCS / "configuration.md"
API_DOC = DOCS / "api.md"


def render_features_doc() -> str:
    lines = [
        "# Features and labels of the model families",
        "",
        "Generated from `inference/catalogue.py`, `inference/intent_catalogue.py` and `inference/pair_features.py`",
        "by `python -m inference.docs`; do not edit by hand.",
        "",
        "# Skills family: student features",
        "",
        "A request's `features` object maps these names to numbers. Each value the skill's model uses must be",
        "finite and inside the valid range; a feature it uses but the request leaves out is imputed with the",
        "training median (and listed in `imputed_features`). Names the skill's model does not use are ignored",
        "without being checked, whatever their value, and listed in `ignored_features`.",
        "",
        "## Features",
        "",
        "| feature | kind | unit | valid range | description |",
        "|---|---|---|---|---|",
    ]
    for feature in FEATURES.values():
        lines.append(
            f"| `{feature.name}` | {feature.kind} | {feature.unit} | {feature.minimum:g} to {feature.maximum:g} "
            f"| {feature.description} |"
        )
    lines += [
        "",
        "## Skills",
        "",
        "Each skill's model takes its features in this order (the model's column order).",
        "",
    ]
    for skill in SKILLS:
        lines.append(f"- **{skill}**: " + ", ".join(f"`{name}`" for name in SKILL_FEATURES[skill]))
    lines += [
        "",
        "# Intent family: labels",
        "",
        "`POST /api/classify` answers one of these intents, and the verticals whose detector scores the query over",
        "its threshold (thresholds are chosen per vertical on validation data when the models are trained).",
        "",
        "| intent | meaning |",
        "|---|---|",
        *(f"| `{intent}` | {meaning} |" for intent, meaning in INTENTS.items()),
        "",
        "| vertical | covers |",
        "|---|---|",
        *(f"| `{vertical}` | {covers} |" for vertical, covers in VERTICALS.items()),
        "",
        "# Text-pair family: the 30 pair features",
        "",
        "`POST /predict` computes these from `text1` and `text2` (lower-cased words, character n-grams), scales them",
        "and feeds them to a logistic regression. In this order:",
        "",
        "| # | feature | what it measures |",
        "|---|---|---|",
        *(f"| {number} | `{name}` | {meaning} |" for number, (name, meaning) in enumerate(PAIR_FEATURES.items(), 1)),
    ]
    return "\n".join(lines) + "\n"


def render_configuration_doc() -> str:
    prefix = Settings.model_config.get("env_prefix", "")
    lines = [
        "# Configuration",
        "",
        "Generated from `inference/settings.py` by `python -m inference.docs`; do not edit by hand.",
        "",
        "Every setting is an environment variable. The model versions a build serves are pinned in `models.env`",
        "(shipped inside the Bento); a variable set in the environment wins over that file.",
        "",
        "| variable | default | description |",
        "|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        default = extra.get("doc_default") or repr(field.get_default(call_default_factory=True))
        aliases = getattr(field.validation_alias, "choices", None)
        variable = " or ".join(f"`{alias}`" for alias in aliases) if aliases else f"`{prefix}{name.upper()}`"
        lines.append(f"| {variable} | `{default}` | {field.description or ''} |")
    lines += [
        "",
        "BentoML's own variables apply too, notably `BENTOML_HOME` (the model store, default `~/bentoml`) and",
        "`BENTOML_DO_NOT_TRACK=true` (set by the Makefile and the Bento).",
        "",
    ]
    return "\n".join(lines)


def render_api_doc() -> str:
    """Every endpoint: the scoring APIs from the OpenAPI document the server publishes at /docs.json, the other
    routes from the service's route table; then the error codes and the limits."""
    if str(DOCS.parent) not in sys.path:
        sys.path.insert(0, str(DOCS.parent))
    state_dir = os.environ.get("INFERENCE_STATE_DIR")
    import service  # the edge: imported here only, to read its routes

    if state_dir is None and "INFERENCE_STATE_DIR" in os.environ:
        # Importing the service made a state directory for a server about to start; none does here, and servers
        # started later from this process must each get their own.
        with contextlib.suppress(OSError):
            os.rmdir(os.environ.pop("INFERENCE_STATE_DIR"))

    spec = service.Inference.openapi_spec.asdict()
    schemas = spec.get("components", {}).get("schemas", {})
    lines = [
        "# HTTP API",
        "",
        "Generated by `python -m inference.docs` from the OpenAPI document the service publishes at `GET /docs.json`",
        "and from its other routes; do not edit by hand. Request and response models live in `inference/schemas.py`",
        "and are shared with the Python client ([clients](clients.md)).",
        "",
        "Requests are JSON (`Content-Type: application/json`, or none); any other content type gets a 415. An",
        'error of these routes is `{"error": message, "code": code}`, the message naming the field',
        '(`items[3].features: ...`). Two kinds of error come from BentoML itself, as `{"error": message}`',
        "without a code: a request still unanswered after `INFERENCE_REQUEST_TIMEOUT_S` (504) and an unexpected",
        "server error (500); `GET /readyz` answers BentoML's plain-text 503 while a family is not loaded. The Open",
        'Inference Protocol routes (`/v2/...`, [oip](oip.md)) answer errors in the protocol\'s `{"error": message}`.',
        "",
        "Besides the statuses each route lists below, every route can answer 413 and 415 (the limits below), 503",
        "(`models_not_ready` while its family is not loaded; `storage_unavailable` for the routes that need the",
        "database) and 504 (the request timeout).",
        "",
        "## Scoring and monitoring APIs (in the OpenAPI document)",
        "",
    ]
    for path, operations in sorted(spec["paths"].items()):
        for method, operation in sorted(operations.items()):
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            lines += [f"### `{method.upper()} {path}`", "", _plain(operation.get("description") or ""), ""]
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body:
                lines += ["Request body:", "", *_fields_table(_resolve(body, schemas), schemas), ""]
            ok = operation["responses"].get(200) or operation["responses"].get("200") or {}
            answer = ok.get("content", {}).get("application/json", {}).get("schema")
            if answer and _resolve(answer, schemas).get("properties"):
                lines += ["Answer (200):", "", *_fields_table(_resolve(answer, schemas), schemas), ""]
            codes = ", ".join(str(code) for code in sorted(operation["responses"], key=str))
            lines += [f"Statuses in the OpenAPI document: {codes}.", ""]
    lines += [
        "## Other routes (not in the OpenAPI document)",
        "",
        "| method | path | what |",
        "|---|---|---|",
    ]
    for route in service.extra_routes.routes:
        methods = ", ".join(sorted(method for method in route.methods or () if method != "HEAD"))
        lines.append(f"| {methods} | `{route.path}` | {_route_doc(route)} |")
    lines += [
        "",
        "The `/admin/...` routes and `DELETE /api/v1/cache/students/{student_id}` need `Authorization: Bearer",
        "<INFERENCE_ADMIN_TOKEN>` (compared in constant time); without a configured token they answer 403",
        "`admin_disabled`, with a wrong or missing one 401 `unauthorized`.",
        "",
        "## Error codes",
        "",
        "The codes of the HTTP API, then the codes of the command-line tools, which share the error hierarchy.",
        "",
        "| code | status | meaning |",
        "|---|---|---|",
        *(f"| `{code}` | {status} | {meaning} |" for code, status, meaning in _error_codes() if code not in CLI_CODES),
        "",
        "| code | where | meaning |",
        "|---|---|---|",
        *(f"| `{code}` | {CLI_CODES[code]} | {meaning} |" for code, _, meaning in _error_codes() if code in CLI_CODES),
        "",
        "## Limits",
        "",
        "Checked before the body is parsed (size, depth) or where the values are read (items, characters); a",
        "request over one is refused and counted in `inference_limit_rejections_total{family, limit}`.",
        "",
        "| limit | variable | default | over it |",
        "|---|---|---|---|",
    ]
    prefix = Settings.model_config.get("env_prefix", "")
    for label, name, answer in LIMITS:
        default = Settings.model_fields[name].get_default(call_default_factory=True)
        lines.append(f"| `{label}` | `{prefix}{name.upper()}` | {default} | {answer} |")
    return "\n".join(lines) + "\n"


# (metric label, setting, what the client gets)
LIMITS = (
    ("body_bytes", "max_body_bytes", "413 `body_too_large`"),
    ("json_depth", "max_json_depth", "400 `json_too_deep`"),
    ("batch_items", "max_batch_items", "400 `batch_too_large`"),
    ("text_chars", "max_text_chars", "400 `invalid_text` (the text; in a batch, that text only)"),
)


# Codes no HTTP route answers: raised by the command-line tools (and, for artifacts and the schema, caught by the
# service, which then answers with the codes of the first table).
CLI_CODES = {
    "model_version_exists": "`import_models.py` (exit 2)",
    "invalid_artifact": "`import_models.py` (exit 2); a version that fails to load at start or in a reload shows "
    "as `models_not_ready` or `reload_failed`",
    "run_in_progress": "`python -m inference.batch` (exit 4)",
    "run_superseded": "`python -m inference.batch` (exit 1)",
    "unsupported_database": "`python -m inference.batch` (exit 1)",
    "schema_mismatch": "`python -m inference.batch` (exit 1); in the service, ratings and correlations answer "
    "`storage_unavailable`",
}

# Codes answered by the edge itself rather than raised as an InferenceError.
EDGE_CODES = (
    ("invalid_json", 400, "The body is not valid JSON (the message says where)."),
    ("unauthorized", 401, "An admin call without the right bearer token."),
    ("admin_disabled", 403, "An admin call while no INFERENCE_ADMIN_TOKEN is configured."),
)


def _error_codes() -> list[tuple[str, int, str]]:
    from inference import errors, faults, manager

    found = {code: (code, status, meaning) for code, status, meaning in EDGE_CODES}
    for module in (errors, faults, manager):
        for value in vars(module).values():
            if not (isinstance(value, type) and issubclass(value, errors.InferenceError) and value.__doc__):
                continue
            if value.__module__ == module.__name__ and value.code not in found and value is not errors.InferenceError:
                found[value.code] = (value.code, int(value.status), _plain(value.__doc__))
    return sorted(found.values(), key=lambda entry: (entry[1], entry[0]))


def _resolve(schema: dict, schemas: dict) -> dict:
    reference = schema.get("$ref")
    return schemas.get(reference.rsplit("/", 1)[-1], {}) if reference else schema


def _fields_table(schema: dict, schemas: dict) -> list[str]:
    required = set(schema.get("required", ()))
    rows = ["| field | type | required | constraints | description |", "|---|---|---|---|---|"]
    for name, field in schema.get("properties", {}).items():
        rows.append(
            f"| `{name}` | {_type(field, schemas)} | {'yes' if name in required else 'no'} | "
            f"{_constraints(field)} | {_plain(field.get('description', ''))} |"
        )
    return rows


def _type(field: dict, schemas: dict) -> str:
    if "$ref" in field:
        return _resolve(field, schemas).get("title", field["$ref"].rsplit("/", 1)[-1])
    if field.get("type") == "array":
        return f"array of {_type(field.get('items', {}), schemas)}"
    if "anyOf" in field:
        return " or ".join(_type(option, schemas) for option in field["anyOf"])
    return str(field.get("type", "any"))


def _constraints(field: dict) -> str:
    found = []
    for key, shown in (("minLength", "length ≥"), ("maxLength", "length ≤"), ("minimum", "≥"), ("maximum", "≤")):
        if key in field:
            found.append(f"{shown} {field[key]}")
    for key, shown in (("minItems", "items ≥"), ("maxItems", "items ≤"), ("minProperties", "keys ≥")):
        if key in field:
            found.append(f"{shown} {field[key]}")
    if "pattern" in field:
        found.append(f"matches `{field['pattern']}`")
    if "enum" in field:
        found.append("one of " + ", ".join(f"`{value}`" for value in field["enum"]))
    if "properties" in field and field.get("type") == "object":
        found.append(f"{len(field['properties'])} known keys ([features](features.md))")
    return "; ".join(found)


def _route_doc(route: object) -> str:
    endpoint = getattr(route, "endpoint", None)
    text = (getattr(endpoint, "__doc__", None) or "").strip()
    return _plain(text.split("\n\n")[0]) if text else ROUTE_NOTES.get(getattr(route, "path", ""), "")


# Routes whose handlers are built by a factory (no docstring of their own).
ROUTE_NOTES = {
    "/api/v1/skills/models": "The skill models of the stable version: version, metadata, metrics, feature names.",
    "/model_info": "The text-pair model: version, features, metrics.",
    "/dashboard": "The monitoring dashboard (HTML): drift, score histograms, correlations, latency, cache.",
    "/admin/routes": "Every family's route: versions and weights (admin).",
    "/admin/routes/{family}": 'Set a family\'s weights, `{"weights": {"v1.0.0": 90, "v1.1.0": 10}}` (admin).',
    "/admin/routes/{family}/rollback": "Send all of a family's traffic to its stable version (admin).",
    "/admin/models/reload": 'Load a version from the store, `{"family": ..., "version": ...}` (admin).',
    "/api/v1/cache/students/{student_id}": "Drop a student's cached answers (admin): all of them with a Redis "
    "cache; with the in-process cache (`memory://`), those of the worker that takes the call (the others expire "
    "after INFERENCE_CACHE_TTL_S).",
    "/v2/health/live": "Open Inference Protocol: alive ([oip](oip.md)).",
    "/v2/health/ready": "Open Inference Protocol: ready, 503 while a family is not loaded.",
    "/v2/models/{name}": "Open Inference Protocol: a skill model's metadata (inputs, outputs, versions).",
    "/v2/models/{name}/versions/{version}": "Open Inference Protocol: metadata of one version.",
    "/v2/models/{name}/ready": "Open Inference Protocol: the model can answer.",
    "/v2/models/{name}/versions/{version}/ready": "Open Inference Protocol: that version can answer.",
    "/v2/models/{name}/infer": "Open Inference Protocol: score rows with the stable version.",
    "/v2/models/{name}/versions/{version}/infer": "Open Inference Protocol: score rows with that version.",
}


def _plain(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


GENERATED = {
    FEATURES_DOC: render_features_doc,
    CONFIGURATION_DOC: render_configuration_doc,
    API_DOC: render_api_doc,
}


def main() -> int:
    DOCS.mkdir(exist_ok=True)
    for path, render in GENERATED.items():
        path.write_text(render())
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
