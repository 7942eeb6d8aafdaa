"""The family protocol, owned by the serving layer that calls it: what the serving path, the cache, monitoring,
the shadow and the model manager need from a model family, and nothing more. Families depend on this module;
nothing in `inference.serving` imports a family.

A family (skills, intent, text pair, or one of a team's own) is a `Family`: it names the models that make up one
of its versions in the model store and loads a version into a `Scorer`. A `Scorer` is one loaded, validated
version: requests in, answers or per-item errors out, through its own adaptive batcher. Everything else is generic
and written once: version choice, the result cache, observation, shadow comparison, hot reload.

`ScorerBase` gives the members a simple family leaves alone working defaults (as KServe's `Model` does), so a
scorer writes `cache_key`, `score_many` and what it changes. Abilities only some families have are protocols of
their own, found with `isinstance`: `RuntimeControls` (switches an admin flips at run time, e.g. the intent
ensemble flag). How to add a family: docs/architecture.md, "Adding a family".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

from inference.errors import InferenceError

if TYPE_CHECKING:
    from pathlib import Path

    from inference.faults import FaultInjector
    from inference.monitoring.metrics import Metrics
    from inference.monitoring.observer import Observer
    from inference.serving.batching import BatcherOptions
    from inference.serving.cache import CacheKey
    from inference.settings import Settings

Request = TypeVar("Request")
Answer = TypeVar("Answer", bound=BaseModel)


@dataclass(frozen=True)
class LoadContext:
    """What a family needs to load a version: the settings, where to report, and the faults of drills."""

    settings: Settings
    metrics: Metrics
    faults: FaultInjector
    batching: BatcherOptions  # what every batcher of the version shares: sizes, the queue's bound, reporting
    # Parts of a family that run as services of their own, by name (the intent ensemble's, when apart): the
    # composition root's clients of them. Empty when everything runs in this process.
    remotes: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Measure:
    """What the shadow compares of an answer: a score in [0, 1] and a label, and the version that gave it."""

    score: float
    label: object
    version: str


class Scorer(Protocol, Generic[Request, Answer]):
    """One loaded and validated version of a family."""

    version: str
    answer_type: type[Answer]  # what the cache stores (its JSON)

    def model_names(self) -> list[str]:
        """The model store names this version serves (for /health and /api/v1/models)."""
        ...

    def prepare(self, requests: Sequence[Request]) -> Sequence[Request]:
        """Settle what depends on the version before the cache is asked (the intent variant); may raise an
        `InferenceError` that refuses the whole request (a bad header)."""
        ...

    def segment(self, request: Request) -> str:
        """Which part of the family a prepared request goes to, for the request metrics (skills: the skill;
        intent: the variant); from a small fixed set, never the caller's free text."""
        ...

    def cache_key(self, request: Request) -> CacheKey:
        """The key of this request's answer: model, version and a hash of the normalised input."""
        ...

    def cacheable(self, answer: Answer) -> bool:
        """Whether this answer may be kept (a degraded answer is not)."""
        ...

    def from_cache(self, answer: Answer) -> Answer:
        """A cached answer as it is sent again (`cached: true`, a fresh timestamp where there is one)."""
        ...

    async def score_many(self, requests: Sequence[Request]) -> list[Answer | InferenceError]:
        """Answers in the requests' order; a request that cannot be answered gets its error in its place."""
        ...

    def observe(self, request: Request, answer: Answer, observer: Observer) -> None:
        """Report an answer given (scores, drift inputs, the prediction log)."""
        ...

    def measure(self, answer: Any) -> Measure | None:
        """What the shadow compares of an answer; None for one it must not compare (an error, a fallback)."""
        ...

    def close(self) -> None:
        """Release what the version holds (its batcher's thread)."""
        ...


class ScorerBase(Generic[Request, Answer]):
    """Defaults for the members of `Scorer` a simple family need not change: requests as they come, one segment,
    every answer cacheable and sent again as it was stored, nothing observed or compared by the shadow."""

    version: str
    answer_type: type[Answer]

    def prepare(self, requests: Sequence[Request]) -> Sequence[Request]:
        return requests

    def segment(self, request: Request) -> str:
        return "all"

    def cacheable(self, answer: Answer) -> bool:
        return True

    def from_cache(self, answer: Answer) -> Answer:
        return answer

    def observe(self, request: Request, answer: Answer, observer: Observer) -> None:
        return None

    def measure(self, answer: Any) -> Measure | None:
        return None

    def close(self) -> None:
        return None


@runtime_checkable
class RuntimeControls(Protocol):
    """A scorer with switches an admin changes at run time, kept in the control store (the intent ensemble flag)."""

    def controls(self) -> dict[str, dict[str, object]]:
        """Every control as this scorer applies it now."""
        ...

    def control(self, name: str) -> dict[str, object]:
        """One control (`InvalidRequest` naming the known ones for another name)."""
        ...

    def apply_control(self, controls: Mapping[str, Mapping[str, object]]) -> None:
        """Take the controls of a newer control-store revision."""
        ...


@dataclass(frozen=True)
class LabelledAnswer:
    """A version's answer to a labelled item, as feedback stores it: the variant that answered ("" for a family
    with one), the true label and the one given."""

    variant: str
    label: str
    predicted: str


@runtime_checkable
class LabelledFeedback(Protocol):
    """A scorer that answers labelled items (their true label known) for live accuracy per version and variant."""

    def answer_labelled(
        self, items: Sequence[Any], *, max_text_chars: int, first_index: int = 0
    ) -> list[LabelledAnswer]:
        """Every variant's answer to every item, straight from the models (no cache, batcher or fallback), each
        variant's answers in the order of `items` (a variant that cannot answer gives none); `InvalidRequest`
        naming the item (`items[first_index + i]`) when one is unusable or its label is not one this version
        gives."""
        ...


@runtime_checkable
class DescribesModels(Protocol):
    """A scorer that describes its version's models for a read route (a family's models page)."""

    def describe(self) -> BaseModel:
        """The models of this version: names, metadata, metrics, features."""
        ...


class Family(Protocol):
    """A model family: which store models make up a version, and how a version is loaded."""

    name: str

    def model_names(self, settings: Settings, version: str) -> list[str]:
        """The store names of the models that make up `version` (a Bento must carry each `name:version`)."""
        ...

    def versions(self, settings: Settings) -> list[str]:
        """The versions of this family in the model store, oldest first."""
        ...

    def resolve(self, settings: Settings, version: str) -> str:
        """A pinned version as it is; `latest` as the highest version in the store."""
        ...

    def load(self, version: str, context: LoadContext) -> Scorer[Any, Any]:
        """Load `version` from the store and validate it (`ArtifactError` naming the model and the fault)."""
        ...

    def import_artifacts(self, root: Path, version: str) -> list[str]:
        """Validate the artifacts under `root` (in the store's format: what the trainers and the importers write)
        and save them as `version`, all or nothing; the tags saved."""
        ...

    def item_failure(self, index: int, request: Any, error: InferenceError) -> BaseModel:
        """The answer in a batch's place for a request that failed."""
        ...
