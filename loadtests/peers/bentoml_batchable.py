"""This service's skills scoring with BentoML's own adaptive batching in place of the in-process batcher.

    BENTOML_HOME=... bentoml serve loadtests.peers.bentoml_batchable:BatchableSkills --port 3200

The same models, feature preparation, scoring and answers as the service (`SkillsScorer`), but the batching is
`@bentoml.api(batchable=True)`: BentoML's CorkDispatcher gathers the lists of concurrent requests into one call.
A batchable API takes a batch, so a single request is a list of one: `POST /infer {"requests": [item]}`, and the
100-item batch is `{"requests": [100 items]}`; the answer is the list of results. Same number of workers as the
service. Measured by `loadtests.bench` so that the choice of batcher rests on a figure.

Not a product: one invalid item fails the whole merged call (BentoML batches across requests), and there is no
cache, routing or monitoring.
"""

from __future__ import annotations

import bentoml

from inference.families.skills.family import pinned_skill_models
from inference.families.skills.scorer import SkillsScorer
from inference.families.skills.scoring import SkillRow, score_skill_rows
from inference.schemas import SkillInferenceRequest, SkillInferenceResult
from inference.settings import get_settings


@bentoml.service(name="batchable-skills", workers=get_settings().workers, traffic={"timeout": 10})
class BatchableSkills:
    def __init__(self) -> None:
        self.scorer = SkillsScorer(pinned_skill_models(get_settings()))

    @bentoml.api(route="/readyz")
    async def readyz(self) -> dict[str, bool]:
        return {"ready": True}

    # The dispatcher's latency objective is loose so that it never answers 503 under the 64-client load; its
    # batch size matches the in-process batcher's.
    @bentoml.api(batchable=True, max_batch_size=1024, max_latency_ms=5000)
    def infer(self, requests: list[SkillInferenceRequest]) -> list[SkillInferenceResult]:
        prepared = [self.scorer.prepare_request(request) for request in requests]
        scores = score_skill_rows([SkillRow(model, row.values) for model, row in prepared])
        return [
            self.scorer.answer(request, model, row, scored)
            for request, (model, row), scored in zip(requests, prepared, scores, strict=True)
        ]
