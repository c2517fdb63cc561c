import numpy as np
import pytest

from kidneyct.evaluation.ranking import (
    Units, bootstrap_interval, paired_comparison, roc_auc, sensitivity_at_specificity,
    specificity_at_sensitivity,
)


def test_operating_points_read_off_the_roc_curve():
    y = np.array([0] * 10 + [1] * 10)
    # Negatives 0..9; positives: 5 above every negative, 5 among the lower half of them.
    scores = np.r_[np.arange(10), [20, 21, 22, 23, 24, 0.5, 1.5, 2.5, 3.5, 4.5]].astype(float)
    # Specificity >= 0.9 allows one negative above the threshold: only the 5 clear positives pass.
    assert sensitivity_at_specificity(y, scores, 0.9) == pytest.approx(0.5)
    # Sensitivity 1.0 needs the threshold at 0.5: the 9 negatives from 1 up are called tumor.
    assert specificity_at_sensitivity(y, scores, 1.0) == pytest.approx(0.1)
    assert roc_auc(y, scores) == pytest.approx((50 + 5 * 0 + (1 + 2 + 3 + 4 + 5)) / 100)


def test_undefined_without_both_classes():
    assert np.isnan(roc_auc(np.zeros(4), np.arange(4.0)))
    assert np.isnan(sensitivity_at_specificity(np.ones(4), np.arange(4.0)))


def _units(rng, separation, repeats=3, series=12, per_series=5):
    y = np.repeat(np.arange(series) % 2, per_series)
    ids = np.repeat([f"s{i}" for i in range(series)], per_series)
    scores = rng.normal(size=(repeats, len(y))) + separation * y
    return Units.of(y, scores, ids)


def test_bootstrap_interval_brackets_the_mean_over_repeats():
    units = _units(np.random.default_rng(0), 1.0)
    result = bootstrap_interval(units, roc_auc, n_boot=200)
    assert result["value"] == pytest.approx(np.mean(result["repeats"]))
    assert result["ci_low"] <= result["value"] <= result["ci_high"]
    perfect = bootstrap_interval(_units(np.random.default_rng(0), 100.0), roc_auc, n_boot=50)
    assert perfect["value"] == perfect["ci_low"] == perfect["ci_high"] == 1.0


def test_paired_comparison_of_a_run_with_itself_and_with_a_better_one():
    rng = np.random.default_rng(1)
    base = _units(rng, 0.5)
    same = paired_comparison(base, base, roc_auc, n_boot=100)
    assert same["delta"] == 0 and same["ci_low"] == 0 and same["ci_high"] == 0 and same["p_better"] == 0
    better = Units.of(base.y, base.scores + 3.0 * base.y, base.series)
    result = paired_comparison(better, base, roc_auc, n_boot=100)
    assert result["delta"] > 0 and result["ci_low"] > 0 and result["p_better"] == 1.0
    with pytest.raises(ValueError, match="same units"):
        paired_comparison(better, Units.of(1 - base.y, base.scores, base.series), roc_auc)
