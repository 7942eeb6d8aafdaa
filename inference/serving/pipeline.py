"""A request's way through any family, written once: choose the version (the route, sticky per caller, or forced
by a header), settle what depends on it (`Scorer.prepare`), look the answers up in the result cache, score what
is missing through the version's batcher, keep the new answers, and report each answer given.

Single and batch requests take the same path; a single request raises its error, a batch gets each item's error
in its place. The routes of service.py call `answer_one` and `answer_many`; everything here is testable in
process with the in-memory cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from inference.errors import BatchTooLarge, InferenceError, InvalidRequest, ModelsNotReady
from inference.monitoring.observer import Observer
from inference.serving.cache import ResultCache
from inference.serving.loader import Families
from inference.serving.protocol import Family, Scorer
from inference.serving.versions import VersionedFamily


@dataclass(frozen=True)
class Outcome:
    """What a request got: per item, the request as the version prepared it (what the shadow scores again) and its
    answer or error, in the request's order; and the versions that answered."""

    requests: list[Any]
    answers: list[Any]  # an answer model, or the InferenceError of that item
    versions: list[str]
    family: Family

    def in_place(self) -> tuple[list[BaseModel], int]:
        """The batch's results, each failed item replaced by the family's failure answer; and how many succeeded."""
        failure = self.family.item_failure
        results = [
            failure(index, request, answer) if isinstance(answer, InferenceError) else answer
            for index, (request, answer) in enumerate(zip(self.requests, self.answers, strict=True))
        ]
        return results, sum(not isinstance(answer, InferenceError) for answer in self.answers)


@dataclass(frozen=True)
class BatchLimit:
    """How a batch of this family is named in errors, e.g. ("items", "item"), and how many it may hold."""

    field: str
    noun: str
    most: int

    def check(self, count: int) -> None:
        if count < 1:
            raise InvalidRequest(f"{self.field}: must hold at least 1 {self.noun}")
        if count > self.most:
            raise BatchTooLarge(f"{self.field}: at most {self.most} {self.noun}s per request, got {count}")


class Serving:
    def __init__(self, families: Families, cache: ResultCache, *, observer: Observer | None = None) -> None:
        self.families = families
        self.cache = cache
        self.observer = observer or Observer()

    def family(self, name: str) -> VersionedFamily[Any]:
        versioned = self.families.get(name)
        if versioned is None:
            if name not in self.families.enabled:
                reason = f"this server does not serve it (INFERENCE_FAMILIES={self.families.enabled})"
            else:
                # The load error itself names files of the model store: it is in the log and behind the admin
                # token (GET /health?detail=true), not in a public answer.
                failed = name in self.families.errors
                reason = "they failed to load (see the log)" if failed else "models are still loading"
            raise ModelsNotReady(f"{name} models are not ready: {reason}")
        return versioned

    async def answer_one(
        self, family: str, request: Any, *, caller_id: str | None, forced_version: str | None
    ) -> tuple[Any, Outcome]:
        """The answer to one request (its error raised), and the outcome (for the shadow)."""
        outcome = await self._answer(family, [request], [caller_id], forced_version, single=True)
        return outcome.answers[0], outcome

    async def answer_many(
        self,
        family: str,
        requests: Sequence[Any],
        *,
        caller_ids: Sequence[str | None],
        forced_version: str | None,
        limit: BatchLimit,
        endpoint: str = "batch",
    ) -> Outcome:
        """Answers to a batch, in order; an item that cannot be answered gets its error in its place. `endpoint`
        labels the request in the metrics (`batch`, or `oip` for the Open Inference Protocol)."""
        return await self._answer(family, requests, caller_ids, forced_version, limit=limit, endpoint=endpoint)

    async def _answer(
        self,
        family: str,
        requests: Sequence[Any],
        caller_ids: Sequence[str | None],
        forced_version: str | None,
        *,
        single: bool = False,
        limit: BatchLimit | None = None,
        endpoint: str = "batch",
    ) -> Outcome:
        with self.observer.request(family, "single" if single else endpoint) as observed:
            if limit is not None:
                limit.check(len(requests))
            versioned = self.family(family)
            groups: dict[str, tuple[Scorer[Any, Any], list[int]]] = {}
            for index, caller_id in enumerate(caller_ids):
                version, scorer = versioned.choose(caller_id=caller_id, forced=forced_version)
                groups.setdefault(version, (scorer, []))[1].append(index)
            versions = sorted(groups)
            observed.version = versions[0] if len(versions) == 1 else "mixed"
            prepared: list[Any] = list(requests)
            answers: list[Any] = [None] * len(requests)
            segments: set[str] = set()
            for version, (scorer, indices) in groups.items():
                group = list(scorer.prepare([requests[i] for i in indices]))
                segments.update(scorer.segment(request) for request in group)
                observed.segment = next(iter(segments)) if len(segments) == 1 else "mixed"
                found = await self._answer_version(family, version, scorer, group)
                for index, request, answer in zip(indices, group, found, strict=True):
                    prepared[index], answers[index] = request, answer
            if single and isinstance(answers[0], InferenceError):
                raise answers[0]
            return Outcome(prepared, answers, versions, self.families.kinds[family])

    async def _answer_version(
        self, family: str, version: str, scorer: Scorer[Any, Any], requests: list[Any]
    ) -> list[Any]:
        """Cache lookup of all, scoring of the misses, cache fill, observation: one version's part of a request."""
        answers: list[Any] = [None] * len(requests)
        keys = [scorer.cache_key(request) for request in requests] if self.cache.enabled else []
        if keys:
            for position, value in enumerate(await self.cache.get_many(keys)):
                if value is not None:
                    answers[position] = scorer.from_cache(scorer.answer_type.model_validate_json(value))
            hits = sum(answer is not None for answer in answers)
            self.observer.cache(family, version, hits, len(requests) - hits)
        missing = [position for position, answer in enumerate(answers) if answer is None]
        if missing:
            scored = await scorer.score_many([requests[position] for position in missing])
            fresh: dict[Any, bytes] = {}
            for position, answer in zip(missing, scored, strict=True):
                answers[position] = answer
                if keys and not isinstance(answer, InferenceError) and scorer.cacheable(answer):
                    fresh[keys[position]] = answer.model_dump_json().encode()
            if fresh:
                await self.cache.set_many(fresh)
        for request, answer in zip(requests, answers, strict=True):
            if not isinstance(answer, InferenceError):
                scorer.observe(request, answer, self.observer)
        return answers
