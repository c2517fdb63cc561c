import numpy as np

from kidneyct.evaluation.series import aggregate_by_group


def test_series_aggregation_means_probabilities_per_group():
    labels = np.array([0, 0, 1, 1, 1])
    probs = np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.4, 0.6], [0.6, 0.4]])
    ids, series_labels, series_probs = aggregate_by_group(labels, probs, ["a", "a", "b", "b", "c"])
    assert ids == ["a", "b", "c"] and series_labels.tolist() == [0, 1, 1]
    np.testing.assert_allclose(series_probs, [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
