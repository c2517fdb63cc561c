"""The study rule: one tumor probability for a study from its in-scope slices, and the slices that drove it."""

import numpy as np
import pytest

from kidneyct.study.rule import StudyRule, call_study, study_score


def test_the_top_k_rule_means_the_k_highest_slices_and_names_them():
    probs = np.array([0.1, 0.2, 0.9, 0.8, 0.05, 0.7, 0.1])
    indices = [10, 11, 12, 13, 14, 15, 16]
    call = call_study(probs, indices, 0.5, StudyRule("top_k", k=3))
    assert call.probability == pytest.approx((0.9 + 0.8 + 0.7) / 3) and call.tumor
    assert call.driving_slices == [12, 13, 15] and "top-3 mean" in call.description
    assert not call_study(probs, indices, 0.85, StudyRule("top_k", k=3)).tumor  # one confident slice is not enough
    assert study_score([0.3, 0.6], rule=StudyRule("top_k", k=3)).driving == [0, 1]  # k capped by length


@pytest.mark.parametrize("rule, expected, driving", [
    (StudyRule("mean"), 0.375, [0, 1, 2, 3]), (StudyRule("max"), 0.8, [3]),
    (StudyRule("top_fraction", fraction=0.5), 0.6, [2, 3]), (StudyRule("noisy_or"), 1 - 0.9 * 0.8 * 0.6 * 0.2, [0, 1, 2, 3]),
])
def test_each_rule_gives_its_probability_and_driving_slices(rule, expected, driving):
    score = study_score([0.1, 0.2, 0.4, 0.8], rule=rule)
    assert score.probability == pytest.approx(expected) and score.driving == driving and score.n_in_scope == 4


def test_out_of_scope_slices_never_drive_a_call():
    probs = [0.9, 0.95, 0.1, 0.2, 0.15, 0.99]
    in_scope = [False, False, True, True, True, False]
    call = call_study(probs, list(range(6)), 0.5, StudyRule("max"), in_scope)
    assert call.probability == pytest.approx(0.2) and call.driving_slices == [3] and call.tumor is False
    none = call_study(probs, list(range(6)), 0.5, StudyRule("max"), [False] * 6)
    assert none.probability is None and none.tumor is None and "no kidney found" in none.description


def test_an_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="unknown study rule"):
        StudyRule("median")
