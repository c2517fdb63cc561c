import numpy as np

from kidneyct.evaluation.series import aggregate_by_group


def test_series_aggregation_means_probabilities_per_group():
    labels = np.array([0, 0, 1, 1, 1])
    probs = np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.4, 0.6], [0.6, 0.4]])
    ids, series_labels, series_probs = aggregate_by_group(labels, probs, ["a", "a", "b", "b", "c"])
    assert ids == ["a", "b", "c"] and series_labels.tolist() == [0, 1, 1]
    np.testing.assert_allclose(series_probs, [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])


def test_series_aggregation_under_a_study_rule_keeps_rows_summing_to_one():
    from kidneyct.study.rule import StudyRule

    labels = np.array([0, 0, 0, 1])
    probs = np.array([[0.9, 0.1, 0.0], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6], [0.05, 0.5, 0.45]])
    ids, _, series_probs = aggregate_by_group(labels, probs, ["a", "a", "a", "b"], StudyRule("max"),
                                              ["Tumor", "Normal", "Cyst"])
    assert ids == ["a", "b"] and series_probs[0, 0] == 0.9 and series_probs[1, 0] == 0.05
    np.testing.assert_allclose(series_probs.sum(1), 1.0)
    mean_others = probs[:3, 1:].mean(0)
    np.testing.assert_allclose(series_probs[0, 1:], mean_others / mean_others.sum() * 0.1)
