"""Every setting of the service in one object, read from environment variables (prefix `INFERENCE_`)."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import AliasChoices, Field, PositiveInt, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from inference.families.intent.variants import VARIANTS
from inference.faults import parse_fault
from inference.schemas import SKILL_NAME

LATEST = "latest"
# The model versions this build serves. Shipped inside the Bento (bentofile.yaml `include`), read below the
# environment: an INFERENCE_* variable always wins over the file.
MODEL_PINS_FILE = Path(__file__).resolve().parent.parent / "models.env"


class Settings(BaseSettings):
    """Defaults work on a laptop; production overrides them through the environment (see docs/configuration.md)."""

    # Errors name the setting and say what is wrong, never quote its value: a token or a database password would
    # otherwise reach the log of a server that fails to start.
    model_config = SettingsConfigDict(
        env_prefix="INFERENCE_", env_file=MODEL_PINS_FILE, extra="ignore", frozen=True, hide_input_in_errors=True
    )

    models_file: str = Field(
        MODEL_PINS_FILE.name,
        description="The file pinning the model versions served (a relative path is from the code's folder: "
        "models.env, the Bento's pins). "
        "`none`: serve what the model store holds, with no pins: the newest version of each family, every skill "
        "model at the newest skills version, and (unless INFERENCE_FAMILIES is set) only the families the store "
        "holds models of; nothing is trained.",
    )
    skills_version: str = Field(
        LATEST,
        description="Version of the skill models served (INFERENCE_SKILLS), e.g. v1.0.0. `latest` (highest semver "
        "in the store) is for development only; a Bento pins an exact version.",
    )
    intent_version: str = Field(
        LATEST, description="Version of the intent models (classic, ensemble and verticals are versioned together)."
    )
    textpair_version: str = Field(LATEST, description="Version of the text-pair model.")
    model_versions: dict[str, str] = Field(
        default_factory=dict,
        description='The model version each family serves, as JSON, e.g. {"skills": "v1.0.0", "intent": "v1.1.0"}. '
        "Wins over the older per-family settings (INFERENCE_SKILLS_VERSION, INFERENCE_INTENT_VERSION, "
        "INFERENCE_TEXTPAIR_VERSION: still read, deprecated). A family named nowhere: `latest`.",
    )
    family_plugins: list[str] = Field(
        default_factory=list,
        description='A team\'s own model families, as JSON: each the "module:attribute" of its registration (a '
        '`FamilySpec`), e.g. ["my_team.toxicity.spec:SPEC"]; served beside the built-in ones. See docs/architecture.md.',
    )
    families: list[str] = Field(
        default_factory=lambda: ["skills", "intent", "textpair"],
        description='Model families this server loads and serves, as JSON, e.g. ["skills"]. The server is ready '
        "when all of them are loaded; routes of a family not listed answer 503.",
    )
    skills: list[str] | None = Field(
        None,
        description='The skills served, as JSON, e.g. ["communication", "digital_literacy"]: each is the model '
        "`skill-<skill>` at the skills version. Unset: every skill model in the store at that version. The build "
        "pins its list in models.env (bentofile.yaml's tags are written from it: python -m tools.pins).",
    )
    skill_versions: dict[str, str] = Field(
        default_factory=dict,
        description='Per-skill overrides of the pinned skills version as JSON, e.g. {"leadership": "v1.1.0"}: that '
        "skill's model comes from the override whenever the pinned version is served. Versions routed to or "
        "reloaded by the admin API serve every skill at their own version.",
    )
    workers: Literal["cpu_count"] | PositiveInt = Field(
        "cpu_count",
        description="Worker processes per server; `cpu_count` is one per CPU the process may use (cgroup-aware). "
        "Each worker loads the models and batches its own requests.",
    )
    compiled_scoring: bool = Field(
        True,
        description="Score skill requests with each model's ONNX form (ONNX Runtime) when it has one and it equals "
        "the booster on the held-out samples at load; false: always XGBoost. The batch scorer always uses XGBoost.",
    )
    request_timeout_s: float = Field(
        5.0, gt=0, le=300, description="A request not answered within this many seconds gets a 504."
    )
    max_batch_items: int = Field(
        1000,
        ge=1,
        le=100_000,
        description="Most items accepted by one batch request of the scoring APIs (teacher ratings: 1000 per "
        "request, fixed).",
    )
    max_body_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        description="Largest request body of a batch route, in bytes (413 beyond): the default fits the largest "
        "text batch the item and character limits allow, and 1000 skill items of about 100 features each.",
    )
    max_json_depth: int = Field(
        32, ge=4, le=1000, description="Deepest JSON nesting accepted in a request body (400 beyond)."
    )
    max_single_body_bytes: int = Field(
        64 * 1024,
        ge=1024,
        description="Largest body of a single-item scoring request (/api/v1/skills/infer, /api/classify, "
        "/api/v2/classify/ensemble, /predict), in bytes (413 beyond): the most one item can take within the "
        "feature and text limits, with room to spare.",
    )
    max_features: int = Field(
        256,
        ge=1,
        le=100_000,
        description="Most feature names one skills item may carry, used or not (400 `too_many_features` beyond): "
        "unknown names are echoed in `ignored_features` and hashed into the cache key, so they are bounded too.",
    )
    max_request_chars: int = Field(
        200_000,
        ge=1,
        description="Most characters of text one request may carry over all its texts (400 `too_many_chars` "
        "beyond): bounds the work of a text batch, whose cost grows with the characters it holds.",
    )
    max_concurrent_requests: int = Field(
        64,
        ge=1,
        description="Requests one worker works on at once (probes and /metrics aside); beyond it the next one is "
        "answered 503 `overloaded` with Retry-After at once, never queued into a 504.",
    )
    max_concurrent_batches: int = Field(
        4,
        ge=1,
        description="Batch requests (skills and intent batches, Open Inference Protocol tensors, ratings, labelled "
        "feedback) one worker works on at once; beyond it the next batch is answered 503 `overloaded` with "
        "Retry-After at once. A batch costs the worker's event loop what its items would cost as single requests, "
        "so batches are bounded apart and single requests never wait behind a crowd of them.",
    )
    max_queue_wait_ms: float = Field(
        100.0,
        gt=0,
        le=60_000,
        description="Most time a request may be expected to wait in its family's queue (the work queued ahead of "
        "it, at the family's measured cost per item); a request over it is answered 503 `overloaded` with "
        "Retry-After at once. Keep it well under INFERENCE_REQUEST_TIMEOUT_S.",
    )
    max_event_loop_lag_ms: float = Field(
        250.0,
        gt=0,
        le=60_000,
        description="Most delay a worker's event loop may have before it takes new requests: past it (the worker "
        "spends its time parsing and answering requests it already took) the next ones are answered 503 "
        "`overloaded` with Retry-After at once, before their bodies are read.",
    )
    retry_after_s: int = Field(
        1,
        ge=1,
        le=60,
        description="Seconds in the Retry-After header of a 503 `overloaded` answer (the clients wait at most 10 s "
        "by default, whatever it says).",
    )
    admin_wait_s: float = Field(
        3.0,
        gt=0,
        le=60,
        description="How long an admin call that loads models (reload, new weights) waits for its operation before "
        "answering 202 with the operation to follow (GET /admin/operations/{id}); keep it under the request "
        "timeout. The operation goes on either way.",
    )
    batcher_max_size: int = Field(1024, ge=1, description="Most rows the adaptive batcher scores in one call.")
    batcher_max_wait_ms: float = Field(
        0.0,
        ge=0,
        le=1000,
        description="Extra wait of every family's batchers to gather a batch; 0 dispatches as soon as the model "
        "is free.",
    )
    access_log: bool = Field(
        False,
        description="Log one line per HTTP request (BentoML's access log). Off by default: at full load that is "
        "thousands of lines a second, and /metrics counts requests by route and status already.",
    )
    trace_scoring: bool = Field(
        False,
        description="Record OpenTelemetry spans for the scoring routes. BentoML records spans for every request "
        "even when no exporter is configured, which costs about half the CPU of a scoring request, so the scoring "
        "routes are left out unless this is on; configure an exporter in BentoML's `tracing` settings to use it.",
    )
    ensemble_service: str = Field(
        "local",
        description="Where the intent ensemble runs: `local` (in the intent worker), `apart` (its own BentoML "
        "service, `intent-ensemble`, which `bentoml serve` starts beside the front as a process group of its own), "
        "or the URL of its own deployment (http://host:port, called through bentoml.depends). Apart or remote, an "
        "intent worker loads no ensemble model, and an ensemble that is absent, starting or slow is answered by "
        'classic with `fallback` and a reason (docs/deployment.md, "The ensemble as its own service").',
    )
    ensemble_workers: int = Field(
        1, ge=1, le=64, description="Workers of the ensemble's own service (INFERENCE_ENSEMBLE_SERVICE apart)."
    )
    intent_split: dict[str, float] = Field(
        default_factory=lambda: {"classic": 90.0, "ensemble": 10.0},
        description="Weights of the intent variants for callers that do not ask for one (header "
        "X-Model-Preference), as JSON; sticky per user_id when the request carries one. The starting point of the "
        "ensemble flag, which the admin API changes at runtime (PUT /admin/intent/ensemble).",
    )
    routing_salt: str = Field(
        "variants-v1",
        description="Salt of the sticky assignments: which callers see which intent variant, and which students "
        "or users get which model version under INFERENCE_ROUTES. Changing it reshuffles both.",
    )
    intent_ensemble_budget_ms: float = Field(
        250.0, gt=0, le=60_000, description="An ensemble answer slower than this is replaced by classic's (fallback)."
    )
    ensemble_guard: bool = Field(
        True,
        description="The guard: a cost or latency spike of the intent ensemble lowers its rollout percentage by "
        "itself, within the bounds below, recorded in the admin audit by `guard` (docs/monitoring.md). It never "
        "raises the share, nor changes enabled or allowed_users.",
    )
    ensemble_guard_cost_per_1k: float = Field(
        1.0,
        gt=0,
        description="The guard acts when 1,000 ensemble requests cost more than this (in the currency of "
        "INFERENCE_COST_CPU_HOUR) over its window: the requirement's ceiling of 0.001 a request.",
    )
    ensemble_guard_p95_ms: float | None = Field(
        None,
        gt=0,
        le=60_000,
        description="The guard acts when the ensemble requests' P95 latency over its window is above this; unset: "
        "INFERENCE_INTENT_ENSEMBLE_BUDGET_MS (over 5% of them waited out the budget).",
    )
    ensemble_guard_floor_percentage: float = Field(
        1.0,
        ge=0,
        le=100,
        description="The guard never lowers the ensemble's rollout percentage below this, and leaves a share at or "
        "under it alone: a trickle of ensemble requests keeps its figures measured.",
    )
    ensemble_guard_step: float = Field(
        0.5, gt=0, lt=1, description="Each action of the guard multiplies the rollout percentage by this (0.5 halves)."
    )
    ensemble_guard_cooldown_s: float = Field(
        300.0,
        ge=0,
        description="The guard acts at most once in this long, counted from the share's last change, whoever made "
        "it (an operator's change included).",
    )
    ensemble_guard_window_s: float = Field(
        60.0,
        gt=0,
        le=600,
        description="The guard's figures cover this many recent seconds, and only requests since the share last "
        "changed.",
    )
    ensemble_guard_min_answers: int = Field(
        100,
        ge=1,
        description="Fewest ensemble requests behind a figure before the guard acts on it: a handful of slow or "
        "costly requests cannot move the share.",
    )
    default_intent: str = Field(
        "informational",
        description="The intent answered (flagged as a fallback) when no intent model can answer; one of the intent "
        "models' labels (checked when the family loads).",
    )
    max_text_chars: int = Field(2000, ge=1, le=100_000, description="Longest text accepted by the text families.")
    cors_allowed_origins: list[str] = Field(
        default_factory=list,
        description='Origins allowed to call the API from a browser, as JSON, e.g. ["https://app.example.com"]; '
        "empty (the default) turns CORS off.",
    )
    shadow: dict[str, str] = Field(
        default_factory=dict,
        description='Shadow versions per family, as JSON, e.g. {"skills": "v1.1.0"}: a sampled share of requests is '
        "scored again by that version after the answer is sent, and the agreement recorded (skills, intent, "
        "textpair). Empty: off.",
    )
    shadow_share: float = Field(
        0.1, ge=0, le=1, description="Share of requests copied to the shadow version (INFERENCE_SHADOW)."
    )
    inject_faults: dict[str, str] = Field(
        default_factory=dict,
        description='For drills and tests only: model name to "fail" or "delay_ms=N", as JSON, e.g. '
        '{"intent-ensemble": "fail"}; a key `load:<family>:<version>` acts on loading that version. Empty by '
        "default.",
    )
    cache_url: str = Field(
        "memory://",
        validation_alias=AliasChoices("CACHE_URL", "INFERENCE_CACHE_URL"),
        description="Result cache: `memory://` (in-process LRU, per worker), `redis://host:6379/0` (shared by "
        "workers and replicas) or `none://` (off). Read from CACHE_URL (or INFERENCE_CACHE_URL).",
    )
    cache_ttl_s: float = Field(86_400.0, gt=0, description="How long a cached answer lives (default 24 h).")
    cache_timeout_ms: float = Field(
        50.0, gt=0, le=5_000, description="Redis calls slower than this are abandoned and count as a miss."
    )
    cache_max_entries: int = Field(100_000, ge=1, description="Most answers the in-process cache holds per worker.")
    routes: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description='Traffic split between model versions per family, as JSON, e.g. {"skills": {"v1.0.0": 90, '
        '"v1.1.0": 10}}; sticky per student_id (skills) and user_id (intent); the text pair has no caller id, so '
        "each of its requests draws a version by the weights. A family not listed serves its pinned version only.",
    )
    routes_file: Path | None = Field(
        None,
        description="A YAML or JSON file with the same mapping as INFERENCE_ROUTES (e.g. a mounted ConfigMap); "
        "it wins over INFERENCE_ROUTES. Read when a worker starts; change weights at runtime with the admin API.",
    )
    admin_token: SecretStr | None = Field(
        None,
        description="Bearer token of the admin API (/admin/..., cache invalidation), recorded as `admin` in the "
        "audit of changes. Unset, and no INFERENCE_ADMIN_TOKENS: the admin API is off.",
    )
    admin_tokens: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='Named bearer tokens of the admin API as JSON, e.g. {"alice": "...", "deploy-bot": "..."}: '
        "each works as INFERENCE_ADMIN_TOKEN does, and the audit of changes records which name made each one.",
    )
    ratings_token: SecretStr | None = Field(
        None,
        description="Bearer token of the ratings writers (POST /api/v1/monitoring/ratings), a role apart from the "
        "admin's. Unset, and no INFERENCE_RATINGS_TOKENS: ratings are refused (403), so nobody can fake the "
        "ground truth.",
    )
    ratings_tokens: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='Named ratings writer tokens as JSON, e.g. {"school-a": "...", "lms-sync": "..."}.',
    )
    control_url: str | None = Field(
        None,
        description="Where the admin changes (routes, rollbacks, reloads) live for the whole deployment: a "
        "SQLAlchemy URL, `postgresql+psycopg://user@host/db` in production (every replica follows it within "
        "about a second; versioned, audited, concurrent changes refused), or `sqlite:///path` for servers on one "
        "host. Unset: the server's INFERENCE_STATE_DIR, shared by its workers only.",
    )
    model_source: str | None = Field(
        None,
        description="A folder every replica mounts (a shared volume) holding `bentoml models export` files "
        "(`<name>-<version>.bentomodel`): a version the local model store lacks (not baked into the image) is "
        "imported from there when a route, a reload or a weight change names it, once its sha256 matches the "
        "folder's `SHA256SUMS` manifest (`sha256sum *.bentomodel > SHA256SUMS`). Unset: the local store only.",
    )
    state_dir: Path | None = Field(
        None,
        description="Where the workers of one server share admin changes when INFERENCE_CONTROL_URL is unset. "
        "Default: a fresh directory per server start, so admin changes last until the server restarts; a lasting "
        "directory keeps them across restarts (they win over INFERENCE_ROUTES for the families they name).",
    )
    reload_watch_s: float = Field(
        0.0,
        ge=0,
        description="When above 0, every this many seconds each family's newest version in the store is loaded, "
        "validated and made stable if it is newer than the one serving. 0 (the default) watches nothing.",
    )
    database_url: str = Field(
        default_factory=lambda: f"sqlite:///{default_data_dir() / 'inference.db'}",
        validation_alias=AliasChoices("DATABASE_URL", "INFERENCE_DATABASE_URL"),
        json_schema_extra={"doc_default": "sqlite:///$BENTOML_HOME/inference.db"},
        description="SQLAlchemy URL of the database for teacher ratings, the prediction log and batch scoring: a "
        "SQLite file by default (beside the model store), `postgresql+psycopg://user@host/db` in production. "
        "Read from DATABASE_URL (or INFERENCE_DATABASE_URL).",
    )
    database_timeout_s: float = Field(
        5.0,
        gt=0,
        le=600,
        description="The service's database calls: longest wait for a connection to open, and (PostgreSQL) longest "
        "statement; past it the call fails and the caller gets 503 or the timer tries again. The batch scorer "
        "has its own (INFERENCE_BATCH_STATEMENT_TIMEOUT_S).",
    )
    batch_statement_timeout_s: float = Field(
        600.0, gt=0, le=86_400, description="Longest statement of the batch scorer on PostgreSQL."
    )
    predictions_retention_days: float = Field(
        90.0,
        ge=0,
        description="Rows of the prediction log older than this are deleted by the retention job "
        "(`python -m inference.retention`); 0 keeps them forever.",
    )
    feedback_retention_days: float = Field(
        365.0, ge=0, description="Labelled feedback older than this is deleted by the retention job; 0: forever."
    )
    ratings_retention_days: float = Field(
        730.0,
        ge=0,
        description="Teacher ratings received longer ago than this are deleted by the retention job; 0: forever. "
        "They are the training labels of the next versions (`python -m train.export`): keep them long.",
    )
    cost_cpu_hour: float = Field(
        0.04,
        ge=0,
        description="Price of one CPU for an hour, in your currency: what inference_cost_dollars_total charges "
        "requests for their CPU time. The default is a placeholder of the order of cloud list prices; set yours.",
    )
    cost_gib_hour: float = Field(
        0.005,
        ge=0,
        description="Price of one GiB of memory for an hour: what requests are charged for the replica's resident "
        "memory while they are served. A placeholder like the CPU price.",
    )
    prediction_log_share: float = Field(
        1.0, ge=0, le=1, description="Share of skill scores written to the prediction log (for the correlation)."
    )
    drift_window: int = Field(2000, ge=10, description="Live observations per model version kept for drift.")
    drift_min_observations: int = Field(
        500,
        ge=1,
        description="Fewest observations before drift is computed: PSI over 10 bins reads about 9/n on an unshifted "
        "sample of n, so small windows look drifted.",
    )
    drift_psi_alert: float = Field(0.2, gt=0, description="A PSI above this raises the drift alert.")
    correlation_window_days: float = Field(30.0, gt=0, description="Ratings and scores this recent are correlated.")
    correlation_alert_below: float = Field(
        0.5, ge=-1, le=1, description="A Pearson r between scores and teacher ratings below this raises the alert."
    )
    feedback_window_days: float = Field(
        30.0, gt=0, description="Labelled feedback (intent, text pair) received within this many days counts."
    )
    feedback_min_items: int = Field(
        100, ge=1, description="Fewest labelled items of a version and variant before its accuracy is given."
    )
    correlation_min_pairs: int = Field(20, ge=3, description="Fewest score-rating pairs before r is computed.")
    batch_chunk_size: int = Field(
        20_000,
        ge=1,
        le=1_000_000,
        description="Students the batch scorer reads, scores and commits at a time; a killed run resumes after "
        "the last chunk it committed.",
    )
    batch_lookback_s: float = Field(
        3600.0,
        ge=0,
        description="An incremental run reads the students whose updated_at is later than the last finished run's "
        "start less this margin: a feature writer's time stamps may trail its commits (a long transaction) or run "
        "behind this clock. A change stamped earlier than that is scored by the next full run.",
    )
    batch_retries: int = Field(
        3, ge=0, le=10, description="Retries of a database call that failed transiently (connection lost, locked)."
    )
    batch_retry_backoff_s: float = Field(
        1.0, ge=0, le=60, description="First wait before a retry; it doubles with each retry, plus jitter."
    )
    batch_progress_interval_s: float = Field(
        10.0, gt=0, description="Seconds between the batch scorer's progress lines (done, rate, ETA)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of the `inference` logger."
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="Format of the service's log lines: `text` (BentoML's) or `json`, one object per line with "
        "time, level, logger, message and, for a line logged while a request was answered, its request_id (the "
        "X-Request-ID of the answer). For the `inference` logger, BentoML's loggers and the access log.",
    )

    @field_validator("skills")
    @classmethod
    def _skill_names(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value:
                raise ValueError("list at least one skill, or leave it unset to serve every skill in the store")
            bad = [name for name in value if not SKILL_NAME.match(name)]
            if bad:
                raise ValueError(f"{bad} are not skill names (lowercase letters, digits and _, starting with a letter)")
            if len(set(value)) != len(value):
                raise ValueError("a skill is listed twice")
        return value

    @field_validator("skill_versions")
    @classmethod
    def _override_names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [name for name in value if not SKILL_NAME.match(name)]
        if bad:
            raise ValueError(f"{bad} are not skill names (lowercase letters, digits and _, starting with a letter)")
        return value

    @field_validator("intent_split")
    @classmethod
    def _known_variants(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(VARIANTS))
        if unknown:
            raise ValueError(f"unknown variants {unknown}; expected some of {', '.join(VARIANTS)}")
        if any(weight < 0 for weight in value.values()) or sum(value.values()) <= 0:
            raise ValueError("weights must be non-negative with a positive sum")
        return value

    @field_validator("ensemble_service")
    @classmethod
    def _ensemble_place(cls, value: str) -> str:
        if value in ("local", "apart") or re.fullmatch(r"https?://[^\s/]+(:\d+)?/?", value):
            return value.rstrip("/")
        raise ValueError(f"expected local, apart or an http(s)://host:port URL, got {value!r}")

    @field_validator("inject_faults")
    @classmethod
    def _valid_faults(cls, value: dict[str, str]) -> dict[str, str]:
        for spec in value.values():
            parse_fault(spec)
        return value

    @field_validator("cache_url")
    @classmethod
    def _known_cache(cls, value: str) -> str:
        if value.split("://", 1)[0] not in ("memory", "none", "redis", "rediss", "unix"):
            raise ValueError(f"unsupported cache URL {value!r}; expected memory://, redis://host:port/db or none://")
        return value

    @model_validator(mode="after")
    def _registered_families(self) -> Settings:
        """Families named in INFERENCE_FAMILIES, INFERENCE_SHADOW and INFERENCE_ROUTES are registered ones."""
        known = self.family_names()
        for setting, named in (("families", self.families), ("shadow", self.shadow)):
            unknown = sorted(set(named) - set(known))
            if unknown:
                raise ValueError(f"{setting}: unknown families {unknown}; expected some of {', '.join(known)}")
        check_routes(self.routes, known)
        return self

    def family_names(self) -> tuple[str, ...]:
        """The registered families: the built-in ones and INFERENCE_FAMILY_PLUGINS'."""
        from inference.families.registry import specs

        try:
            return tuple(specs(self.family_plugins))
        except ValueError as err:
            raise ValueError(f"family_plugins: {err}") from err

    @field_validator("routes")
    @classmethod
    def _valid_routes(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        return check_routes(value, known=None)

    @field_validator("admin_token", "ratings_token")
    @classmethod
    def _safe_token(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None:
            _check_token(TOKEN_SETTINGS[str(info.field_name)], value)
        return value

    @field_validator("admin_tokens", "ratings_tokens")
    @classmethod
    def _safe_named_tokens(cls, value: dict[str, SecretStr], info: ValidationInfo) -> dict[str, SecretStr]:
        for name, token in value.items():
            _check_token(f"{TOKEN_SETTINGS[str(info.field_name)]}[{name!r}]", token)
        return value

    @model_validator(mode="after")
    def _one_token_per_name(self) -> Settings:
        """A token value under two names (an admin token that is also a ratings writer's, or two admins sharing
        one) would blur the roles and the audit's record of who changed what."""
        holders: dict[str, str] = {}
        for setting, token in self._tokens():
            first = holders.setdefault(token, setting)
            if first != setting:
                raise ValueError(f"{first} and {setting} hold the same token; give each name and role its own")
        return self

    def _tokens(self) -> list[tuple[str, str]]:
        """(setting, value) of every bearer token configured; an empty one is off."""
        found = []
        for field in TOKEN_SETTINGS:
            value = getattr(self, field)
            named = value.items() if isinstance(value, dict) else [(None, value)]
            for name, token in named:
                setting = TOKEN_SETTINGS[field] if name is None else f"{TOKEN_SETTINGS[field]}[{name!r}]"
                if token is not None and token.get_secret_value():
                    found.append((setting, token.get_secret_value()))
        return found

    @property
    def serves_store(self) -> bool:
        """INFERENCE_MODELS_FILE=none: what the store holds is served, no pins."""
        return self.models_file.strip().lower() in ("", "none")

    def version_of(self, family: str) -> str:
        """The version `family` serves: INFERENCE_MODEL_VERSIONS, else the family's older setting, else its
        registration's default (latest)."""
        if family in self.model_versions:
            return self.model_versions[family]
        legacy = getattr(self, f"{family}_version", None)
        if isinstance(legacy, str):
            return legacy
        from inference.families.registry import specs

        registered = specs(self.family_plugins).get(family)
        return registered.default_version if registered is not None else LATEST

    def configured_routes(self) -> dict[str, dict[str, float]]:
        """INFERENCE_ROUTES, or the routes file when one is set."""
        if self.routes_file is None:
            return self.routes
        return read_routes_file(self.routes_file, self.family_names())


# The bearer token settings, by field, as their environment variables (the names a refusal gives).
TOKEN_SETTINGS = {
    "admin_token": "INFERENCE_ADMIN_TOKEN",
    "admin_tokens": "INFERENCE_ADMIN_TOKENS",
    "ratings_token": "INFERENCE_RATINGS_TOKEN",
    "ratings_tokens": "INFERENCE_RATINGS_TOKENS",
}


MIN_TOKEN_CHARS = 24  # `openssl rand -hex 32` gives 64
# The examples' tokens all start with one of these (compared ignoring case), as do the usual hand-typed stand-ins.
PLACEHOLDER_PREFIXES = ("change-me", "changeme", "change_me", "and-me", "replace-me", "replace_me")


def unsafe_token(token: str) -> str | None:
    """Why `token` must not guard a route, or None when it may. The reason never quotes the token."""
    if token.lower().startswith(PLACEHOLDER_PREFIXES):
        return "is an example placeholder (deploy/secrets.env.example, k8s/base/secret.example.yaml), not a secret"
    if len(token) < MIN_TOKEN_CHARS:
        return f"is shorter than {MIN_TOKEN_CHARS} characters"
    return None


def _check_token(setting: str, token: SecretStr) -> None:
    """ValueError naming `setting` when its token is unsafe (the token itself is never quoted); empty is off."""
    value = token.get_secret_value()
    reason = unsafe_token(value) if value else None
    if reason:
        raise ValueError(f"{setting} {reason}; make one with `openssl rand -hex 32`")


def default_data_dir() -> Path:
    """Beside the model store: $BENTOML_HOME, or ~/bentoml."""
    return Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml")


def check_routes(routes: object, known: Sequence[str] | None) -> dict[str, dict[str, float]]:
    """Routes are {family: {version: weight}}: known families (when `known` is given), non-negative weights with a
    positive sum."""
    if not isinstance(routes, dict):
        raise ValueError("routes must be a mapping of family to {version: weight}")
    for family, weights in routes.items():
        if known is not None and family not in known:
            raise ValueError(f"routes: unknown family {family!r}; expected some of {', '.join(known)}")
        if not isinstance(weights, dict) or not weights:
            raise ValueError(f"routes.{family}: expected a non-empty mapping of version to weight")
        for version, weight in weights.items():
            finite = isinstance(weight, int | float) and not isinstance(weight, bool) and math.isfinite(weight)
            if not finite or weight < 0:
                raise ValueError(f"routes.{family}.{version}: expected a finite non-negative number, got {weight!r}")
        if sum(weights.values()) <= 0:
            raise ValueError(f"routes.{family}: at least one weight must be positive")
    return {
        family: {str(version): float(weight) for version, weight in weights.items()}
        for family, weights in routes.items()
    }


def read_routes_file(path: Path, known: Sequence[str] | None) -> dict[str, dict[str, float]]:
    try:
        return check_routes(yaml.safe_load(path.read_text()) or {}, known)
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: cannot read the routes file ({err})") from err


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings(_env_file=pins_file())


def pins_file() -> Path | None:
    """The pins file INFERENCE_MODELS_FILE names (models.env by default); None for `none`."""
    named = os.environ.get("INFERENCE_MODELS_FILE", MODEL_PINS_FILE.name).strip()
    return None if named.lower() in ("", "none") else MODEL_PINS_FILE.parent / named
