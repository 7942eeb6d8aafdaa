import math

import numpy as np
import pytest

from inference.errors import EmptyFeatures, InvalidFeatureValue, NoKnownFeatures, UnknownSkill
from inference.families.skills.features import check_skill, prepare_row


@pytest.fixture
def model(stable_models):
    return stable_models["communication"]


def test_values_come_out_in_model_order_with_missing_ones_imputed(model):
    given = {"question_ratio": 0.2, "words_per_response": 150.0}
    row = prepare_row(given, model)
    assert row.values.shape == (len(model.feature_names),)
    for index, name in enumerate(model.feature_names):
        expected = given.get(name, model.imputation_defaults[index])
        assert row.values[index] == expected, name
    assert set(row.imputed) == set(model.feature_names) - set(given)
    assert row.ignored == ()


def test_features_the_model_does_not_use_are_ignored_and_listed(model):
    row = prepare_row({"words_per_response": 100, "zzz": "not even a number", "leadership_roles_taken": 3}, model)
    assert row.ignored == ("leadership_roles_taken", "zzz")


def test_imputation_does_not_modify_the_stored_defaults(model):
    before = model.imputation_defaults.copy()
    prepare_row(dict.fromkeys(model.feature_names, 0.5), model)
    np.testing.assert_array_equal(model.imputation_defaults, before)


def test_integers_are_accepted_as_numbers(model):
    row = prepare_row({"words_per_response": 120}, model)
    assert row.values[model.feature_names.index("words_per_response")] == 120.0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("12", "expected a number, got str"),
        (None, "expected a number, got NoneType"),
        (True, "expected a number, got bool"),
        ([1], "expected a number, got list"),
        (math.nan, "expected a finite number"),
        (math.inf, "expected a finite number"),
        (-math.inf, "expected a finite number"),
        (10**400, "expected a finite number"),
        (-5, "outside the valid range [0, 2000]"),
        (2000.5, "outside the valid range [0, 2000]"),
    ],
)
def test_a_bad_value_is_rejected_naming_the_feature(model, value, message):
    with pytest.raises(InvalidFeatureValue, match=r"features\.words_per_response") as caught:
        prepare_row({"words_per_response": value}, model)
    assert message in str(caught.value)
    assert caught.value.status == 400


def test_empty_features_are_rejected(model):
    with pytest.raises(EmptyFeatures, match="at least one feature"):
        prepare_row({}, model)


def test_features_with_nothing_the_model_uses_are_rejected(model):
    with pytest.raises(NoKnownFeatures, match="none of the 7 features of skill 'communication'"):
        prepare_row({"leadership_roles_taken": 2}, model)


def test_an_unknown_skill_error_names_the_skills_served():
    served = ("communication", "digital_literacy")
    assert check_skill("digital_literacy", served) == "digital_literacy"
    with pytest.raises(UnknownSkill, match="expected one of communication, digital_literacy"):
        check_skill("leadership", served)
    with pytest.raises(UnknownSkill):
        check_skill(None, served)


def test_a_schema_without_ranges_accepts_any_finite_value_and_with_one_names_it(model):
    from dataclasses import replace

    from inference.families.skills.schema import FeatureSchema, FeatureSpec

    open_schema = FeatureSchema(tuple(FeatureSpec(spec.name, spec.default) for spec in model.schema.features))
    unbounded = replace(model, schema=open_schema)
    assert prepare_row({"words_per_response": 1e9}, unbounded).values[0] == 1e9
    with pytest.raises(InvalidFeatureValue, match=r"features.words_per_response: 1e\+09 is outside the valid range"):
        prepare_row({"words_per_response": 1e9}, model)
