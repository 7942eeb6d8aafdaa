"""The batch scorer's pure parts: vectorised preparation equals the request path, the features hash, sharding,
scoring a chunk with bad rows in it, and progress lines."""

import math

import numpy as np
import pytest

from inference.batch.chunks import FeatureChunk, features_hash, score_chunk, served_feature_names
from inference.batch.progress import Progress
from inference.errors import InvalidRequest
from inference.families.skills.features import prepare_matrix, prepare_row
from inference.families.skills.scoring import score_rows
from inference.sharding import Shard, shard_key
from train.data.catalogue import FEATURES, SKILL_FEATURES, SKILLS
from train.data.population import DEMO_FEATURE_NAMES
from train.data.students import generate_students

UPDATED = "2026-11-24 02:00:00.000000"


def chunk_of(rows):
    """A FeatureChunk from feature dicts, as the database would return them (None where missing)."""
    return FeatureChunk.from_rows(
        [
            (f"s-{index:04d}", UPDATED, *(row.get(name) for name in DEMO_FEATURE_NAMES))
            for index, row in enumerate(rows)
        ],
        DEMO_FEATURE_NAMES,
    )


def messy_rows(n, seed):
    """Generated students with every kind of bad value sprinkled in: out of range, inf, NaN, all missing."""
    rng = np.random.default_rng(seed)
    rows = generate_students(n, seed=seed).feature_dicts()
    for row in rows:
        for name in list(row):
            draw = rng.random()
            feature = FEATURES[name]
            if draw < 0.02:
                row[name] = feature.maximum + 1.0
            elif draw < 0.03:
                row[name] = feature.minimum - 0.5
            elif draw < 0.035:
                row[name] = math.inf
            elif draw < 0.04:
                row[name] = math.nan
            elif draw < 0.05:
                row[name] = feature.maximum  # on the bound: valid
            elif draw < 0.15:
                del row[name]
    rows[0] = {}
    rows[1] = {"hedging_ratio": 0.3}  # none of most skills' features
    return rows


@pytest.mark.parametrize("skill", SKILLS)
def test_prepare_matrix_accepts_and_imputes_exactly_what_prepare_row_does(stable_models, skill):
    model = stable_models[skill]
    rows = messy_rows(400, seed=5)
    chunk = chunk_of(rows)
    columns = chunk.columns_of(model)
    prepared = prepare_matrix(chunk.values[:, columns], chunk.missing[:, columns], model)
    accepted = 0
    for index, row in enumerate(rows):
        try:
            expected = prepare_row(row, model).values
        except InvalidRequest:
            assert not prepared.valid[index], row
            continue
        accepted += 1
        assert prepared.valid[index], row
        np.testing.assert_array_equal(prepared.values[index], expected)
    assert 50 < accepted < 400  # the sample holds both kinds


def test_a_chunk_scores_like_the_request_path_and_reports_bad_items_with_its_messages(stable_models):
    rows = messy_rows(300, seed=9)
    chunk = chunk_of(rows)
    scored = score_chunk(chunk, stable_models)
    failures = {(failure.student_id, failure.skill): failure for failure in scored.failures}
    assert scored.skills == SKILLS
    for column, skill in enumerate(SKILLS):
        model = stable_models[skill]
        for index, row in enumerate(rows):
            student_id = chunk.student_ids[index]
            try:
                values = prepare_row(row, model).values
            except InvalidRequest as err:
                assert not scored.scored[index, column]
                assert failures[student_id, skill].code == err.code
                assert failures[student_id, skill].message == err.message
                continue
            assert scored.scored[index, column]
            expected = score_rows(model, values[np.newaxis, :], compiled=False)  # the batch scorer's path
            assert scored.scores[index, column] == pytest.approx(expected.score[0], abs=1e-12)
            assert scored.confidences[index, column] == pytest.approx(expected.confidence[0], abs=1e-12)
    assert failures[chunk.student_ids[0], "communication"].code == "empty_features"
    assert failures[chunk.student_ids[1], "leadership"].code == "no_known_features"
    assert scored.assessment_count + len(scored.failures) == len(rows) * len(SKILLS)


def test_text_stored_in_a_number_column_fails_that_item_with_a_message_naming_the_feature(stable_models):
    good = generate_students(3, seed=1).feature_dicts()
    rows = [good[0], {**good[1], "words_per_response": "lots"}, good[2]]
    scored = score_chunk(chunk_of(rows), stable_models)
    failed = {(failure.student_id, failure.skill) for failure in scored.failures}
    users = {skill for skill in SKILLS if "words_per_response" in SKILL_FEATURES[skill]}
    assert failed == {("s-0001", skill) for skill in users}
    message = next(failure.message for failure in scored.failures)
    assert message == "features.words_per_response: expected a number, got str 'lots'"
    assert scored.scored[[0, 2]].all()


def test_assessment_columns_are_student_major(stable_models):
    scored = score_chunk(chunk_of(generate_students(5, seed=2).feature_dicts()), stable_models)
    columns = scored.assessment_columns()
    order = list(zip(columns["row"].tolist(), columns["skill"].tolist(), strict=True))
    assert order == sorted(order)
    assert len(order) == scored.assessment_count


def test_the_served_features_are_every_models_features_once_in_the_order_first_seen(stable_models):
    names = served_feature_names(stable_models)
    assert names[: len(stable_models["communication"].feature_names)] == stable_models["communication"].feature_names
    assert sorted(names) == sorted({name for model in stable_models.values() for name in model.feature_names})
    assert len(names) == len(set(names))


def test_a_chunk_read_without_a_feature_of_a_model_is_refused_naming_it(stable_models):
    rows = generate_students(3, seed=1).feature_dicts()
    names = tuple(name for name in DEMO_FEATURE_NAMES if name != "hedging_ratio")
    chunk = FeatureChunk.from_rows([("s-1", UPDATED, *(row.get(name) for name in names)) for row in rows], names)
    with pytest.raises(ValueError, match=r"uses features the chunk was not read with: \['hedging_ratio'\]"):
        score_chunk(chunk, stable_models)


def hash_of(values, missing=None, names=("a", "b", "c")):
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    missing = np.zeros(values.shape, dtype=bool) if missing is None else np.atleast_2d(missing)
    return int(features_hash(values, missing, names)[0])


def test_features_hash_is_pinned_so_stored_assessments_stay_comparable():
    # A change to the hash makes every stored assessment look stale to incremental runs: change it on purpose only.
    assert hash_of([1.0, 2.5, 0.0]) == hash_of([1.0, 2.5, 0.0])
    assert hash_of([1.0, 2.5, 0.0]) == -7093130822568560239


def test_features_hash_tells_values_missing_ones_order_and_names_apart():
    base = hash_of([1.0, 2.5, 0.0])
    assert hash_of([1.0, 2.5, -0.0]) == base  # equal numbers
    assert hash_of([1.0, 2.5, 1e-12]) != base
    assert hash_of([1.0, 2.5, 0.0], missing=[False, False, True]) != base
    assert hash_of([2.5, 1.0, 0.0]) != base
    assert hash_of([1.0, 2.5, 0.0], names=("a", "b", "d")) != base
    many = np.random.default_rng(0).random((20_000, 3))
    hashes = features_hash(many, np.zeros(many.shape, dtype=bool), ("a", "b", "c"))
    assert len(set(hashes.tolist())) == len(many)


def test_shards_split_students_into_disjoint_parts_that_cover_everyone():
    ids = [f"student-{index:07d}" for index in range(4000)]
    shards = [Shard(index, 4) for index in range(4)]
    parts = [{student_id for student_id in ids if shard.contains(student_id)} for shard in shards]
    assert set().union(*parts) == set(ids)
    assert sum(len(part) for part in parts) == len(ids)
    assert all(850 < len(part) < 1150 for part in parts)
    assert shard_key("student-0000001") == 443772614  # md5: the same in PostgreSQL and SQLite


@pytest.mark.parametrize("spec", ["4/4", "-1/2", "a/b", "1", "0/0", ""])
def test_a_bad_shard_spec_is_refused_with_the_expected_form(spec):
    with pytest.raises(ValueError, match="shard"):
        Shard.parse(spec)


def test_progress_lines_give_done_total_rate_and_eta_at_most_once_per_interval():
    now = [0.0]
    lines = []
    progress = Progress(total=1000, unit="students", interval_s=10, clock=lambda: now[0], emit=lines.append)
    now[0] = 5.0
    progress.advance(100)
    assert lines == []
    now[0] = 10.0
    progress.advance(100, extra="1,400 assessments written")
    assert lines == ["200/1,000 students (20.0%), 1,400 assessments written, 20 students/s, ETA 40s"]
