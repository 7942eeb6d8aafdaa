"""Locust profiles for every endpoint family.

    .venv/bin/locust -f loadtests/locustfile.py --host http://127.0.0.1:3000 --headless -u 16 -r 8 -t 60s

- skills: a school's population of generated students (LOCUST_STUDENTS, default 500) whose features stay the
  same between nightly updates; some students are looked at far more often than others (Zipf-like, as
  dashboards are), single-skill callers, batch callers, and an occasional look at the models endpoint;
- intent: search queries drawn with a Zipf-like popularity from 1,000 generated ones (a few queries are very
  common, most are rare), mostly the default split, sometimes a caller that asks for the ensemble, and batches;
- textpair: pairs drawn from 1,000 generated ones.
Repeats are what a result cache serves; loadtests/cache_run.py measures how much.
"""

from __future__ import annotations

import os
import random

from locust import HttpUser, between, task

from train.data.catalogue import SKILLS
from train.data.pairs import generate_pairs
from train.data.queries import generate_queries
from train.data.students import generate_students

POPULATION_SIZE = int(os.environ.get("LOCUST_STUDENTS", "500"))
BATCH_SIZE = 100
ZIPF_EXPONENT = 1.0

_population = generate_students(POPULATION_SIZE, seed=20261123)
STUDENTS = list(zip(_population.student_ids, _population.feature_dicts(), strict=True))
QUERIES = generate_queries(1000, seed=20261124).texts
PAIRS = generate_pairs(1000, seed=20261125).pairs


def zipf_weights(n: int) -> list[float]:
    return [1.0 / (rank**ZIPF_EXPONENT) for rank in range(1, n + 1)]


STUDENT_WEIGHTS = zipf_weights(len(STUDENTS))
QUERY_WEIGHTS = zipf_weights(len(QUERIES))


def skill_item(rng: random.Random) -> dict[str, object]:
    student_id, features = rng.choices(STUDENTS, STUDENT_WEIGHTS)[0]
    return {"student_id": student_id, "skill": rng.choice(SKILLS), "features": features}


class SkillsCaller(HttpUser):
    """An application scoring one student on one skill at a time."""

    weight = 6
    wait_time = between(0.0, 0.01)

    def on_start(self) -> None:
        self.rng = random.Random(id(self))

    @task
    def infer(self) -> None:
        self.client.post("/api/v1/skills/infer", json=skill_item(self.rng), name="skills/infer")


class BatchCaller(HttpUser):
    """A back end sending 100 items at once, and now and then reading the served versions."""

    weight = 1
    wait_time = between(0.05, 0.2)

    def on_start(self) -> None:
        self.rng = random.Random(id(self) + 1)

    @task(10)
    def infer_batch(self) -> None:
        items = [skill_item(self.rng) for _ in range(BATCH_SIZE)]
        self.client.post("/api/v1/skills/infer/batch", json={"items": items}, name="skills/infer/batch")

    @task(1)
    def models(self) -> None:
        self.client.get("/api/v1/skills/models", name="skills/models")


class IntentCaller(HttpUser):
    """A search front end classifying what its users type."""

    weight = 2
    wait_time = between(0.0, 0.02)

    def on_start(self) -> None:
        self.rng = random.Random(id(self) + 2)
        self.user_id = f"user-{self.rng.randrange(10_000)}"

    @task(8)
    def classify(self) -> None:
        text = self.rng.choices(QUERIES, QUERY_WEIGHTS)[0]
        self.client.post("/api/classify", json={"text": text, "user_id": self.user_id}, name="classify")

    @task(1)
    def ensemble(self) -> None:
        text = self.rng.choices(QUERIES, QUERY_WEIGHTS)[0]
        self.client.post("/api/v2/classify/ensemble", json={"text": text}, name="classify/ensemble")

    @task(1)
    def batch(self) -> None:
        texts = self.rng.choices(QUERIES, QUERY_WEIGHTS, k=20)
        self.client.post("/api/classify/batch", json={"texts": texts}, name="classify/batch")


class TextPairCaller(HttpUser):
    """A deduplication job asking whether two texts say the same."""

    weight = 1
    wait_time = between(0.0, 0.02)

    def on_start(self) -> None:
        self.rng = random.Random(id(self) + 3)

    @task
    def predict(self) -> None:
        first, second = self.rng.choice(PAIRS)
        self.client.post("/predict", json={"text1": first, "text2": second}, name="predict")
