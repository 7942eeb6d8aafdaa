"""Locust profiles for the skills API.

    .venv/bin/locust -f loadtests/locustfile.py --host http://127.0.0.1:3000 --headless -u 16 -r 8 -t 60s

A fixed population of generated students whose features repeat (as a school's would between nightly updates),
callers of single inference, batch callers and an occasional look at the models endpoint.
"""

from __future__ import annotations

import random

from locust import HttpUser, between, task

from inference.catalogue import SKILLS
from inference.synthetic import generate_students

POPULATION_SIZE = 2000
BATCH_SIZE = 100

_population = generate_students(POPULATION_SIZE, seed=20261123)
STUDENTS = list(zip(_population.student_ids, _population.feature_dicts(), strict=True))


def skill_item(rng: random.Random) -> dict[str, object]:
    student_id, features = rng.choice(STUDENTS)
    return {"student_id": student_id, "skill": rng.choice(SKILLS), "features": features}


class SkillsCaller(HttpUser):
    """An application scoring one student on one skill at a time."""

    weight = 8
    wait_time = between(0.0, 0.01)

    def on_start(self) -> None:
        self.rng = random.Random(id(self))

    @task
    def infer(self) -> None:
        self.client.post("/api/v1/skills/infer", json=skill_item(self.rng), name="skills/infer")


class BatchCaller(HttpUser):
    """A back end sending 100 items at once."""

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
