"""The nightly scores and the HTTP API's answers agree: 1000 students x 7 skills, scored by the batch scorer and by
`POST /api/v1/skills/infer/batch` of a real server on the same pinned models, equal to 1e-6."""

import pytest

from inference.batch.scorer import BatchScorer, RunOptions
from tests.utils.batch import demo_database, load_students, stored_assessments
from train.data.catalogue import SKILLS
from train.data.students import generate_students

pytestmark = pytest.mark.server


def test_batch_scores_equal_the_http_apis_to_1e_6(server, stable_models, tmp_path, client_without_admin):
    database = demo_database(f"sqlite:///{tmp_path / 'batch.db'}")
    rows = generate_students(1000, seed=61).feature_dicts()
    students = load_students(database, rows, prefix="http")
    summary = BatchScorer(database, stable_models, RunOptions(chunk_size=400)).run()
    assert summary.assessments_written == 7000
    stored = stored_assessments(database.engine)
    compared = 0
    for skill in SKILLS:
        items = [
            {"student_id": student, "skill": skill, "features": features}
            for student, features in zip(students, rows, strict=True)
        ]
        response = client_without_admin.post("/api/v1/skills/infer/batch", json={"items": items})
        assert response.status_code == 200, response.text
        for result in response.json()["results"]:
            assessment = stored[result["student_id"], skill]
            assert result["model_version"] == assessment.model_version
            assert abs(result["score"] - assessment.score) <= 1e-6, (result, assessment)
            assert abs(result["confidence"] - assessment.confidence) <= 1e-6
            compared += 1
    assert compared == 7000
