"""Request factories for the skills API."""

from __future__ import annotations

from typing import Any

from train.data.students import generate_students

# INFERENCE_RATINGS_TOKEN of the test session (tests/conftest.py).
RATINGS_AUTH = {"Authorization": "Bearer test-ratings-token-0123456789abcdef"}


def student_items(n: int, *, seed: int = 123, skills: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """`n` batch items for generated students, cycling through `skills` (all 7 by default)."""
    from train.data.catalogue import SKILLS

    skills = skills or SKILLS
    sample = generate_students(n, seed=seed)
    return [
        {"student_id": student_id, "skill": skills[index % len(skills)], "features": features}
        for index, (student_id, features) in enumerate(zip(sample.student_ids, sample.feature_dicts(), strict=True))
    ]


def delete_from_store(names: list[str], version: str) -> None:
    """Remove `version` of each model from the session's model store (tests leave the store as they found it)."""
    import contextlib

    import bentoml
    from bentoml.exceptions import NotFound

    for name in names:
        with contextlib.suppress(NotFound):
            bentoml.models.delete(f"{name}:{version}")
