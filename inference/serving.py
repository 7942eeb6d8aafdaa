"""A request's path through a family: choose the version (route, sticky per caller, or forced by header), look
the answer up in the result cache, score what is missing with that version, fill the cache.

The routes of service.py call these; everything here is testable in process with the in-memory cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from inference.cache import CacheKey, ResultCache, input_hash
from inference.errors import BatchTooLarge, InvalidRequest, ModelsNotReady
from inference.families import INTENT_FAMILY, SKILLS_FAMILY, TEXTPAIR_FAMILY, Families
from inference.intent import IntentClassifier
from inference.intent_catalogue import VARIANT_MODELS
from inference.monitoring import Observer
from inference.registry import skill_model_name
from inference.schemas import (
    IntentBatchResponse,
    IntentResult,
    SkillBatchRequest,
    SkillBatchResponse,
    SkillInferenceRequest,
    SkillInferenceResult,
    TextPairRequest,
    TextPairResult,
)
from inference.skills import SkillsScorer
from inference.textpair import TextPairScorer
from inference.textpair_catalogue import SAME_MEANING
from inference.texts import check_text
from inference.versions import VersionedFamily

Answer = TypeVar("Answer", bound=BaseModel)


def skills_cache_key(request: SkillInferenceRequest, version: str) -> CacheKey:
    # Numbers are canonicalised (140 and 140.0 are the same feature value); anything else hashes as given and
    # is refused by feature preparation before an answer could be stored.
    features = {
        name: float(value) if isinstance(value, int | float) and not isinstance(value, bool) else repr(value)
        for name, value in request.features.items()
    }
    key: dict[str, object] = {"student_id": request.student_id, "skill": request.skill, "features": features}
    if request.explain:  # an answer without an explanation must not answer a request for one
        key["explain"] = True
    digest = input_hash(key)
    return CacheKey(SKILLS_FAMILY, skill_model_name(request.skill), version, digest, student_id=request.student_id)


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
                reason = self.families.errors.get(name, "models are still loading")
            raise ModelsNotReady(f"{name} models are not ready: {reason}")
        return versioned

    # --- skills ------------------------------------------------------------------------------------------

    async def skills_infer(self, request: SkillInferenceRequest, *, forced_version: str | None) -> SkillInferenceResult:
        with self.observer.request(SKILLS_FAMILY) as observed:
            version, scorer = self.family(SKILLS_FAMILY).choose(caller_id=request.student_id, forced=forced_version)
            observed.version = version
            result = await self._skills_answer(request, version, scorer)
            self._observe_skill(request, result, scorer)
            return result

    async def _skills_answer(
        self, request: SkillInferenceRequest, version: str, scorer: SkillsScorer
    ) -> SkillInferenceResult:
        if not self.cache.enabled:
            return await scorer.infer(request)
        key = skills_cache_key(request, scorer.model_version(request.skill, version))
        (cached,) = await self._lookup(SKILLS_FAMILY, version, [key], SkillInferenceResult)
        if cached is not None:
            return cached
        result = await scorer.infer(request)
        await self._store(version, {key: result})
        return result

    def _observe_skill(
        self, request: SkillInferenceRequest, result: SkillInferenceResult, scorer: SkillsScorer
    ) -> None:
        model = scorer.models[result.skill]
        self.observer.skill_answer(
            skill_model_name(result.skill),
            result.model_version,
            model.metadata.get("reference", {}),
            request.features,
            request.student_id,
            result.skill,
            result.score,
        )

    async def skills_infer_batch(self, request: SkillBatchRequest, *, forced_version: str | None) -> SkillBatchResponse:
        """Each item goes to its student's version; cached items are answered from the cache, the rest scored
        in one batch per version. Results keep the request's order."""
        with self.observer.request(SKILLS_FAMILY) as observed:
            response, versions = await self._skills_batch(request, forced_version)
            observed.version = versions[0] if len(versions) == 1 else "mixed"
            return response

    async def _skills_batch(
        self, request: SkillBatchRequest, forced_version: str | None
    ) -> tuple[SkillBatchResponse, list[str]]:
        items = request.items
        if request.explain:
            items = [item if item.explain else item.model_copy(update={"explain": True}) for item in items]
        family = self.family(SKILLS_FAMILY)
        limit = family.scorers[family.route.stable].max_batch_items
        if not items:
            raise InvalidRequest("items: must hold at least 1 item")
        if len(items) > limit:
            raise BatchTooLarge(f"items: at most {limit} items per request, got {len(items)}")
        by_version: dict[str, tuple[SkillsScorer, list[int]]] = {}
        for index, item in enumerate(items):
            version, scorer = family.choose(caller_id=item.student_id, forced=forced_version)
            by_version.setdefault(version, (scorer, []))[1].append(index)
        results: list[Any] = [None] * len(items)
        succeeded = 0
        for version, (scorer, indices) in by_version.items():
            if self.cache.enabled:
                keys = [skills_cache_key(items[i], scorer.model_version(items[i].skill, version)) for i in indices]
                found = await self._lookup(SKILLS_FAMILY, version, keys, SkillInferenceResult)
            else:
                keys, found = [], [None] * len(indices)
            missing = [position for position, hit in enumerate(found) if hit is None]
            for position, hit in enumerate(found):
                if hit is not None:
                    results[indices[position]] = hit
                    succeeded += 1
            if missing:
                scored = await scorer.infer_batch(
                    SkillBatchRequest.model_construct(items=[items[indices[p]] for p in missing])
                )
                fresh = {}
                for position, result in zip(missing, scored.results, strict=True):
                    results[indices[position]] = result
                    if keys and isinstance(result, SkillInferenceResult):
                        fresh[keys[position]] = result
                succeeded += scored.succeeded
                await self._store(version, fresh)
            for index in indices:
                if isinstance(results[index], SkillInferenceResult):
                    self._observe_skill(items[index], results[index], scorer)
        response = SkillBatchResponse.model_construct(
            results=results, succeeded=succeeded, failed=len(items) - succeeded
        )
        return response, sorted(by_version)

    # --- intent ------------------------------------------------------------------------------------------

    async def classify(
        self, text: str, *, user_id: str | None, preference: str | None, forced_version: str | None
    ) -> IntentResult:
        with self.observer.request(INTENT_FAMILY) as observed:
            classifier, version, variant = self._intent(user_id, preference, forced_version)
            observed.version = version
            check_text(text, field_name="text", max_chars=classifier.policy.max_text_chars)
            return (await self._classify(classifier, version, variant, [text]))[0]

    async def classify_batch(
        self, texts: Sequence[str], *, user_id: str | None, preference: str | None, forced_version: str | None
    ) -> IntentBatchResponse:
        with self.observer.request(INTENT_FAMILY) as observed:
            classifier, version, variant = self._intent(user_id, preference, forced_version)
            observed.version = version

            async def answer(valid: list[str]) -> list[IntentResult]:
                return await self._classify(classifier, version, variant, valid)

            return await classifier.classify_batch(texts, variant=variant, answer=answer)

    def _intent(
        self, user_id: str | None, preference: str | None, forced_version: str | None
    ) -> tuple[IntentClassifier, str, str]:
        version, classifier = self.family(INTENT_FAMILY).choose(caller_id=user_id, forced=forced_version)
        return classifier, version, classifier.choose_variant(preference, user_id)

    async def _classify(
        self, classifier: IntentClassifier, version: str, variant: str, texts: list[str]
    ) -> list[IntentResult]:
        answers = await self._classify_cached(classifier, version, variant, texts)
        for answer in answers:
            self.observer.answer(
                INTENT_FAMILY, VARIANT_MODELS.get(answer.variant, answer.variant), version, answer.confidence
            )
        return answers

    async def _classify_cached(
        self, classifier: IntentClassifier, version: str, variant: str, texts: list[str]
    ) -> list[IntentResult]:
        if not self.cache.enabled:
            return await classifier.classify_many(texts, variant=variant)
        keys = [CacheKey(INTENT_FAMILY, VARIANT_MODELS[variant], version, input_hash(text)) for text in texts]
        found = await self._lookup(INTENT_FAMILY, version, keys, IntentResult)
        missing = [position for position, hit in enumerate(found) if hit is None]
        if missing:
            answers = await classifier.classify_many([texts[p] for p in missing], variant=variant)
            fresh = {}
            for position, answer in zip(missing, answers, strict=True):
                found[position] = answer
                if not answer.fallback:  # a degraded answer is never kept
                    fresh[keys[position]] = answer
            await self._store(version, fresh)
        return [answer for answer in found if answer is not None]

    # --- text pair ---------------------------------------------------------------------------------------

    async def predict_pair(self, request: TextPairRequest, *, forced_version: str | None) -> TextPairResult:
        with self.observer.request(TEXTPAIR_FAMILY) as observed:
            chosen: tuple[str, TextPairScorer] = self.family(TEXTPAIR_FAMILY).choose(
                caller_id=None, forced=forced_version
            )
            version, scorer = chosen
            observed.version = version
            result = await self._pair_answer(request, version, scorer)
            same = result.confidence if result.prediction == SAME_MEANING else 1.0 - result.confidence
            self.observer.answer(TEXTPAIR_FAMILY, scorer.model.name, version, same)
            return result

    async def _pair_answer(self, request: TextPairRequest, version: str, scorer: TextPairScorer) -> TextPairResult:
        if not self.cache.enabled:
            return await scorer.predict(request)
        key = CacheKey(TEXTPAIR_FAMILY, scorer.model.name, version, input_hash([request.text1, request.text2]))
        (cached,) = await self._lookup(TEXTPAIR_FAMILY, version, [key], TextPairResult)
        if cached is not None:
            return cached.model_copy(update={"timestamp": datetime.now(UTC).isoformat(timespec="milliseconds")})
        result = await scorer.predict(request)
        await self._store(version, {key: result})
        return result

    # --- the cache ---------------------------------------------------------------------------------------

    async def _lookup(
        self, family: str, version: str, keys: list[CacheKey], model: type[Answer]
    ) -> list[Answer | None]:
        values = await self.cache.get_many(keys)
        answers: list[Answer | None] = [
            model.model_validate_json(value).model_copy(update={"cached": True}) if value is not None else None
            for value in values
        ]
        hits = sum(answer is not None for answer in answers)
        self.observer.cache(family, version, hits, len(keys) - hits)
        return answers

    async def _store(self, version: str, entries: dict[CacheKey, BaseModel]) -> None:
        if entries:
            await self.cache.set_many({key: answer.model_dump_json().encode() for key, answer in entries.items()})
