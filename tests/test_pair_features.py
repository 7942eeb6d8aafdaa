"""The 30 pair features: documented, in a fixed order, and measuring what their names say."""

import numpy as np
import pytest

from inference.families.textpair.features import N_PAIR_FEATURES, PAIR_FEATURES, PairFeaturizer, lexical_features
from train.data.pairs import generate_pairs


@pytest.fixture(scope="module")
def featurizer():
    return PairFeaturizer().fit(generate_pairs(500, seed=1).pairs)


def features(featurizer, first, second):
    return dict(zip(PAIR_FEATURES, featurizer.transform([(first, second)])[0], strict=True))


def test_thirty_named_features_in_a_fixed_order(featurizer):
    assert N_PAIR_FEATURES == 30
    matrix = featurizer.transform(generate_pairs(40, seed=2).pairs)
    assert matrix.shape == (40, 30) and np.isfinite(matrix).all()
    assert list(featurizer.get_feature_names_out()) == list(PAIR_FEATURES)
    assert len(lexical_features("a b", "b a")) == 28


def test_identical_texts_are_fully_similar(featurizer):
    same = features(featurizer, "the doctor fixed the broken car", "the doctor fixed the broken car")
    for name in ("word_jaccard", "char_similarity", "same_word_bag", "shared_order_agreement", "length_ratio_words"):
        assert same[name] == pytest.approx(1.0), name
    assert same["tfidf_word_cosine"] == pytest.approx(1.0)
    assert same["word_edit_distance"] == 0 and same["negation_mismatch"] == 0


def test_swapped_roles_keep_the_words_but_break_the_order(featurizer):
    swapped = features(featurizer, "the student helped the teacher", "the teacher helped the student")
    assert swapped["same_word_bag"] == 1 and swapped["word_jaccard"] == 1
    assert swapped["shared_order_agreement"] < 1 and swapped["word_edit_distance"] > 0


def test_numbers_and_negation_are_noticed(featurizer):
    numbers = features(featurizer, "she bought two tickets", "she bought three tickets")
    assert numbers["number_mismatch"] == 1 and numbers["number_jaccard"] == 0
    negated = features(featurizer, "he did not finish the exam", "he finished the exam")
    assert negated["negation_mismatch"] == 1
    no_numbers = features(featurizer, "hello there", "hello world")
    assert no_numbers["number_jaccard"] == 1 and no_numbers["number_mismatch"] == 0


def test_every_feature_is_documented_in_the_generated_features_doc():
    from tools.docs import FEATURES_DOC

    text = FEATURES_DOC.read_text()
    assert all(f"`{name}`" in text for name in PAIR_FEATURES)
