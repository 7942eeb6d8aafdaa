"""The soak's traffic: single requests to every family, with a few batches, at a fixed rate per user.

SOAK_RATE_PER_USER (requests per second per user; 0, the default, sends as fast as answers come back, which is
how loadtests/soak.py measures capacity). Students, queries and pairs are drawn uniformly from large generated
sets, so that with the result cache off every request goes through the batchers and the models.
"""

from __future__ import annotations

import os
import random

from locust import HttpUser, constant, constant_throughput, task

from train.data.catalogue import SKILLS
from train.data.pairs import generate_pairs
from train.data.queries import generate_queries
from train.data.students import generate_students

RATE = float(os.environ.get("SOAK_RATE_PER_USER", "0"))
_students = generate_students(5000, seed=20261130)
STUDENTS = list(zip(_students.student_ids, _students.feature_dicts(), strict=True))
QUERIES = generate_queries(2000, seed=20261131).texts
PAIRS = generate_pairs(2000, seed=20261132).pairs


class SoakUser(HttpUser):
    wait_time = constant_throughput(RATE) if RATE > 0 else constant(0)

    def on_start(self) -> None:
        self.rng = random.Random(id(self))

    @task(12)
    def skills(self) -> None:
        student_id, features = self.rng.choice(STUDENTS)
        item = {"student_id": student_id, "skill": self.rng.choice(SKILLS), "features": features}
        self.client.post("/api/v1/skills/infer", json=item, name="skills/infer")

    @task(6)
    def intent(self) -> None:
        self.client.post("/api/classify", json={"text": self.rng.choice(QUERIES)}, name="classify")

    @task(2)
    def textpair(self) -> None:
        first, second = self.rng.choice(PAIRS)
        self.client.post("/predict", json={"text1": first, "text2": second}, name="predict")

    @task(1)
    def skills_batch(self) -> None:
        items = []
        for _ in range(20):
            student_id, features = self.rng.choice(STUDENTS)
            items.append({"student_id": student_id, "skill": self.rng.choice(SKILLS), "features": features})
        self.client.post("/api/v1/skills/infer/batch", json={"items": items}, name="skills/infer/batch")
