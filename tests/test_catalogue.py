"""The demo models' training configuration (train/data/catalogue.py), and the docs generated from the served
models and the code."""

from tools.docs import GENERATED
from train.data.catalogue import FEATURES, SKILL_FEATURES, SKILLS, FeatureKind, features_for


def test_the_seven_skills_are_defined_in_order():
    assert SKILLS == (
        "communication",
        "collaboration",
        "critical_thinking",
        "creativity",
        "problem_solving",
        "self_regulation",
        "leadership",
    )
    assert set(SKILL_FEATURES) == set(SKILLS)


def test_every_skill_lists_known_features_once():
    for skill in SKILLS:
        names = features_for(skill)
        assert len(names) >= 5
        assert len(set(names)) == len(names), skill
        assert set(names) <= set(FEATURES), skill


def test_features_have_units_sane_ranges_and_both_kinds():
    for feature in FEATURES.values():
        assert feature.unit and feature.description
        assert feature.minimum < feature.maximum
    assert {feature.kind for feature in FEATURES.values()} == set(FeatureKind)


def test_generated_docs_are_up_to_date(trained_versions, text_reports):
    for path, render in GENERATED.items():
        assert path.read_text() == render(), f"{path.name} is stale: run `make docs`"
