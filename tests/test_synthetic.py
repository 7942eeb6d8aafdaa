import numpy as np
import pytest

from train.data.catalogue import FEATURES, SKILLS
from train.data.students import HIGH_SKILL_RATING, generate_students


def test_same_seed_gives_the_same_students_and_another_seed_does_not():
    first = generate_students(500, seed=3)
    again = generate_students(500, seed=3)
    other = generate_students(500, seed=4)
    np.testing.assert_array_equal(first.features, again.features)
    np.testing.assert_array_equal(first.ratings, again.ratings)
    assert not np.allclose(np.nan_to_num(first.features), np.nan_to_num(other.features))


def test_values_stay_inside_the_catalogue_ranges_with_some_missing():
    sample = generate_students(5000, seed=1)
    for name in sample.feature_names:
        column = sample.column(name)
        present = column[~np.isnan(column)]
        assert present.min() >= FEATURES[name].minimum and present.max() <= FEATURES[name].maximum, name
    assert 0.01 < np.isnan(sample.features).mean() < 0.06


def test_labels_come_from_teacher_ratings_and_follow_the_traits():
    sample = generate_students(5000, seed=2)
    assert sample.ratings.min() >= 1.0 and sample.ratings.max() <= 5.0
    np.testing.assert_array_equal(sample.labels, (sample.ratings >= HIGH_SKILL_RATING).astype(np.int32))
    for index in range(len(SKILLS)):
        assert np.corrcoef(sample.traits[:, index], sample.ratings[:, index])[0, 1] > 0.8
        assert 0.15 < sample.labels[:, index].mean() < 0.5


def test_feature_shift_moves_the_distribution_but_not_the_ratings():
    base = generate_students(4000, seed=5)
    shifted = generate_students(4000, seed=5, feature_shift={"novel_idea_count": 1.5})
    assert np.nanmedian(shifted.column("novel_idea_count")) > 1.5 * np.nanmedian(base.column("novel_idea_count"))
    np.testing.assert_array_equal(base.ratings, shifted.ratings)
    with pytest.raises(ValueError, match="unknown features"):
        generate_students(10, seed=1, feature_shift={"shoe_size": 1.0})


def test_feature_dicts_leave_out_missing_values():
    sample = generate_students(50, seed=9)
    rows = sample.feature_dicts()
    assert len(rows) == 50
    missing = int(np.isnan(sample.features).sum())
    assert sum(len(sample.feature_names) - len(row) for row in rows) == missing
