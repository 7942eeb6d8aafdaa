"""Property-based tests of feature preparation (hypothesis): any mix of finite, non-finite, out-of-range,
wrongly typed, missing and extra features gives either a valid score or a client error naming the feature,
never another exception."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inference.errors import InvalidFeatureValue, InvalidRequest
from inference.families.skills.features import prepare_row
from inference.families.skills.scoring import score_rows
from train.data.catalogue import FEATURES, SKILLS

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.booleans(),
    st.none(),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=1),
)
in_range = st.sampled_from(sorted(FEATURES)).flatmap(
    lambda name: st.tuples(st.just(name), st.floats(FEATURES[name].minimum, FEATURES[name].maximum))
)
names = st.one_of(st.sampled_from(sorted(FEATURES)), st.text(max_size=12))
feature_dicts = st.one_of(
    st.dictionaries(names, values, max_size=12),  # anything
    st.lists(in_range, max_size=12).map(dict),  # all valid: must always score
    st.tuples(st.lists(in_range, max_size=8).map(dict), st.dictionaries(names, values, max_size=4)).map(
        lambda parts: {**parts[0], **parts[1]}
    ),  # mostly valid with a few odd ones
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(skill=st.sampled_from(SKILLS), features=feature_dicts)
def test_any_features_give_a_valid_score_or_a_client_error_naming_the_feature(stable_models, skill, features):
    model = stable_models[skill]
    try:
        row = prepare_row(features, model)
    except InvalidFeatureValue as err:
        name = err.message.split(":", 1)[0].removeprefix("features.")
        assert name in model.feature_names and name in features, err.message
        return
    except InvalidRequest as err:
        assert err.status == 400 and err.message.startswith("features"), err.message
        return
    assert row.values.shape == (len(model.feature_names),)
    for index, name in enumerate(model.feature_names):
        value = row.values[index]
        assert math.isfinite(value)
        if name in features:
            assert value == float(features[name]) and FEATURES[name].contains(value)
        else:
            assert name in row.imputed
    assert set(row.ignored) == set(features) - set(model.feature_names)
    scores = score_rows(model, row.values[np.newaxis, :])
    assert 0.0 <= scores.score[0] <= 1.0 and 0.0 <= scores.confidence[0] <= 1.0
    assert math.isfinite(scores.margin[0])


@settings(max_examples=200, deadline=None)
@given(skill=st.sampled_from(SKILLS), features=st.lists(in_range, min_size=1, max_size=12).map(dict))
def test_valid_values_of_the_skills_own_features_always_score(stable_models, skill, features):
    model = stable_models[skill]
    own = {name: value for name, value in features.items() if name in model.feature_names}
    if not own:
        own = {model.feature_names[0]: FEATURES[model.feature_names[0]].minimum}
    row = prepare_row(own, model)
    assert 0.0 <= score_rows(model, row.values[np.newaxis, :]).score[0] <= 1.0
