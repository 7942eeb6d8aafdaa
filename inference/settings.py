"""Every setting of the service in one object, read from environment variables (prefix `INFERENCE_`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveInt, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from inference.catalogue import SKILLS

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

    def skill_version(self, skill: str) -> str:
        return self.skill_versions.get(skill, self.skills_version)

    def pinned_skill_versions(self) -> dict[str, str]:
        return {skill: self.skill_version(skill) for skill in SKILLS}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
