"""The soak's traffic: single requests to every family, with a few batches, at a fixed rate per user.

SOAK_RATE_PER_USER (requests per second per user; 0, the default, sends as fast as answers come back, which is
how loadtests/soak.py measures capacity). Students, queries and pairs are drawn uniformly from large generated
sets, so that with the result cache off every request goes through the batchers and the models.
"""

from __future__ import annotations

import os
import random
import time

from locust import HttpUser, constant, constant_throughput, task

from loadtests.soak import RETRIED
from train.data.catalogue import SKILLS
from train.data.pairs import generate_pairs
from train.data.queries import generate_queries
from train.data.students import generate_students

RATE = float(os.environ.get("SOAK_RATE_PER_USER", "0"))
RETRIES = 3  # inference.client's default
MAX_RETRY_AFTER_S = 10.0
_students = generate_students(5000, seed=20261130)
STUDENTS = list(zip(_students.student_ids, _students.feature_dicts(), strict=True))
QUERIES = generate_queries(2000, seed=20261131).texts
PAIRS = generate_pairs(2000, seed=20261132).pairs


class SoakUser(HttpUser):
    wait_time = constant_throughput(RATE) if RATE > 0 else constant(0)

    def on_start(self) -> None:
        self.rng = random.Random(id(self))

    def post(self, path: str, body: dict, name: str) -> None:
        """POST as the shipped clients do: a 503 with Retry-After (load shed at the edge) is waited out and sent
        again, up to 3 times; the shed answer is not a failure, and the next try is counted under `name + RETRIED`
        so the soak reports how many there were. Anything else that is not 2xx is a failure."""
        for attempt in range(RETRIES + 1):
            label = name if attempt == 0 else name + RETRIED
            with self.client.post(path, json=body, name=label, catch_response=True) as response:
                retry_after = response.headers.get("Retry-After")
                if response.status_code != 503 or retry_after is None or attempt == RETRIES:
                    return  # locust's own verdict: 2xx passes, the rest fails
                response.success()
            time.sleep(min(float(retry_after), MAX_RETRY_AFTER_S))

    @task(12)
    def skills(self) -> None:
        student_id, features = self.rng.choice(STUDENTS)
        item = {"student_id": student_id, "skill": self.rng.choice(SKILLS), "features": features}
        self.post("/api/v1/skills/infer", item, "skills/infer")

    @task(6)
    def intent(self) -> None:
        self.post("/api/classify", {"text": self.rng.choice(QUERIES)}, "classify")

    @task(2)
    def textpair(self) -> None:
        first, second = self.rng.choice(PAIRS)
        self.post("/predict", {"text1": first, "text2": second}, "predict")

    @task(1)
    def skills_batch(self) -> None:
        items = []
        for _ in range(20):
            student_id, features = self.rng.choice(STUDENTS)
            items.append({"student_id": student_id, "skill": self.rng.choice(SKILLS), "features": features})
        self.post("/api/v1/skills/infer/batch", {"items": items}, "skills/infer/batch")
