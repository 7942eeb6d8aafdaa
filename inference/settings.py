"""Every setting of the service in one object, read from environment variables (prefix `INFERENCE_`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveInt, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from inference.catalogue import SKILLS
from inference.faults import parse_fault
from inference.intent_catalogue import INTENTS, VARIANTS

LATEST = "latest"
# The model versions this build serves. Shipped inside the Bento (bentofile.yaml `include`), read below the
# environment: an INFERENCE_* variable always wins over the file.
MODEL_PINS_FILE = Path(__file__).resolve().parent.parent / "models.env"


class Settings(BaseSettings):
    """Defaults work on a laptop; production overrides them through the environment (see docs/configuration.md)."""

    model_config = SettingsConfigDict(env_prefix="INFERENCE_", env_file=MODEL_PINS_FILE, extra="ignore", frozen=True)

    skills_version: str = Field(
        LATEST,
        description="Version of all 7 skill models, e.g. v1.0.0. `latest` (highest semver in the store) is for "
        "development only; a Bento pins an exact version.",
    )
    intent_version: str = Field(
        LATEST, description="Version of the intent models (classic, ensemble and verticals are versioned together)."
    )
    textpair_version: str = Field(LATEST, description="Version of the text-pair model.")
    families: list[Literal["skills", "intent", "textpair"]] = Field(
        default_factory=lambda: ["skills", "intent", "textpair"],
        description='Model families this server loads and serves, as JSON, e.g. ["skills"]. The server is ready '
        "when all of them are loaded; routes of a family not listed answer 503.",
    )
    skill_versions: dict[str, str] = Field(
        default_factory=dict,
        description='Per-skill overrides as JSON, e.g. {"leadership": "v1.1.0"}.',
    )
    workers: Literal["cpu_count"] | PositiveInt = Field(
        "cpu_count",
        description="Worker processes per server; `cpu_count` is one per CPU the process may use (cgroup-aware). "
        "Each worker loads the models and batches its own requests.",
    )
    request_timeout_s: float = Field(
        5.0, gt=0, le=300, description="A request not answered within this many seconds gets a 504."
    )
    max_batch_items: int = Field(1000, ge=1, le=100_000, description="Most items accepted by one batch request.")
    batcher_max_size: int = Field(1024, ge=1, description="Most rows the adaptive batcher scores in one call.")
    batcher_max_wait_ms: float = Field(
        0.0, ge=0, le=1000, description="Extra wait to gather a batch; 0 dispatches as soon as the model is free."
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
    intent_split: dict[str, float] = Field(
        default_factory=lambda: {"classic": 90.0, "ensemble": 10.0},
        description="Weights of the intent variants for callers that do not ask for one (header "
        "X-Model-Preference), as JSON; sticky per user_id when the request carries one.",
    )
    routing_salt: str = Field(
        "variants-v1",
        description="Salt of the sticky variant assignment; changing it reshuffles which callers see which variant.",
    )
    intent_ensemble_budget_ms: float = Field(
        250.0, gt=0, le=60_000, description="An ensemble answer slower than this is replaced by classic's (fallback)."
    )
    default_intent: str = Field(
        "informational", description="The intent answered (flagged as a fallback) when no intent model can answer."
    )
    max_text_chars: int = Field(2000, ge=1, le=100_000, description="Longest text accepted by the text families.")
    cors_allowed_origins: list[str] = Field(
        default_factory=list,
        description='Origins allowed to call the API from a browser, as JSON, e.g. ["https://app.example.com"]; '
        "empty (the default) turns CORS off.",
    )
    inject_faults: dict[str, str] = Field(
        default_factory=dict,
        description='For drills and tests only: model name to "fail" or "delay_ms=N", as JSON, e.g. '
        '{"intent-ensemble": "fail"}. Empty by default.',
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of the `inference` logger."
    )

    @field_validator("skill_versions")
    @classmethod
    def _known_skills(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(SKILLS))
        if unknown:
            raise ValueError(f"unknown skills {unknown}; expected some of {', '.join(SKILLS)}")
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

    @field_validator("default_intent")
    @classmethod
    def _known_intent(cls, value: str) -> str:
        if value not in INTENTS:
            raise ValueError(f"unknown intent {value!r}; expected one of {', '.join(INTENTS)}")
        return value

    @field_validator("inject_faults")
    @classmethod
    def _valid_faults(cls, value: dict[str, str]) -> dict[str, str]:
        for spec in value.values():
            parse_fault(spec)
        return value

    def skill_version(self, skill: str) -> str:
        return self.skill_versions.get(skill, self.skills_version)

    def pinned_skill_versions(self) -> dict[str, str]:
        return {skill: self.skill_version(skill) for skill in SKILLS}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
