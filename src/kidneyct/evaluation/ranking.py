"""Ranking statistics to choose recipes by: pooled out-of-fold ROC-AUC, sensitivity at a fixed
specificity and the reverse, with percentile-bootstrap intervals over series and paired comparisons.

Every function takes R score vectors over the same units (one per repeat of a cross-validation with
a different fold assignment) and reports the mean over repeats, so fold-assignment noise averages out;
the bootstrap resamples whole series with one draw shared by all repeats (and, in a paired comparison,
by both recipes), because slices of one series are not independent and because the two recipes must
be judged on the same patients.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

SPECIFICITY_TARGET = 0.90
SENSITIVITY_TARGET = 0.90


def sensitivity_at_specificity(y: np.ndarray, scores: np.ndarray, specificity: float = SPECIFICITY_TARGET) -> float:
    """Highest sensitivity of any threshold whose specificity is at least `specificity` (read off the
    ROC curve, so the threshold is the test set's own: an upper bound for a threshold fixed in advance).

    Args:
        y: 1 for tumor, 0 for the negatives.
        scores: tumor scores, higher = more likely tumor.
        specificity: the specificity to hold.
    """
    if not _both_classes(y):
        return float("nan")
    fpr, tpr, _ = roc_curve(y, scores)
    return float(tpr[fpr <= 1.0 - specificity + 1e-12].max())


def specificity_at_sensitivity(y: np.ndarray, scores: np.ndarray, sensitivity: float = SENSITIVITY_TARGET) -> float:
    """Highest specificity of any threshold whose sensitivity is at least `sensitivity` (ROC curve)."""
    if not _both_classes(y):
        return float("nan")
    fpr, tpr, _ = roc_curve(y, scores)
    return float(1.0 - fpr[tpr >= sensitivity - 1e-12].min())


def roc_auc(y: np.ndarray, scores: np.ndarray) -> float:
    if not _both_classes(y):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(roc_auc_score(y, scores))


def _both_classes(y: np.ndarray) -> bool:
    y = np.asarray(y)
    return 0 < int(y.sum()) < len(y)


RANKING_STATISTICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "roc_auc": roc_auc,
    "sensitivity_at_specificity_90": sensitivity_at_specificity,
    "specificity_at_sensitivity_90": specificity_at_sensitivity,
}


@dataclass(frozen=True)
class Units:
    """Scores of R repeats over the same N units, with each unit's label and series.

    Args:
        y: int [N], 1 = tumor.
        scores: float [R, N], one row per repeat.
        series: [N] series id of each unit (a unit may be a series itself).
    """

    y: np.ndarray
    scores: np.ndarray
    series: np.ndarray

    @classmethod
    def of(cls, y, scores, series) -> "Units":
        scores = np.atleast_2d(np.asarray(scores, float))
        y = np.asarray(y, int)
        if scores.shape[1] != len(y) or len(series) != len(y):
            raise ValueError(f"{len(y)} labels, {scores.shape[1]} scores per repeat and {len(series)} series ids")
        return cls(y, scores, np.asarray(series, dtype=str))

    def members(self) -> list[np.ndarray]:
        _, inverse = np.unique(self.series, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        return np.split(order, np.flatnonzero(np.diff(inverse[order])) + 1)


def mean_over_repeats(units: Units, statistic: Callable, index: np.ndarray | None = None) -> float:
    index = slice(None) if index is None else index
    values = [statistic(units.y[index], row[index]) for row in units.scores]
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def _resamples(units: Units, n_boot: int, seed: int):
    """Index arrays of bootstrap resamples of whole series, stratified by the series' label so that
    every resample keeps both classes (with 10 tumor series a plain resample can lose most of them)."""
    members = units.members()
    label = np.array([units.y[m[0]] for m in members])
    rng = np.random.default_rng(seed)
    strata = [np.flatnonzero(label == value) for value in np.unique(label)]
    for _ in range(n_boot):
        chosen = np.concatenate([rng.choice(s, len(s), replace=True) for s in strata])
        yield np.concatenate([members[c] for c in chosen])


def bootstrap_interval(units: Units, statistic: Callable, n_boot: int = 1000, seed: int = 0,
                       level: float = 0.95) -> dict:
    """Mean-over-repeats statistic with a percentile interval from resampling series.

    Returns:
        {"value", "ci_low", "ci_high", "repeats": [per-repeat values], "n_boot"}.
    """
    draws = np.array([mean_over_repeats(units, statistic, index) for index in _resamples(units, n_boot, seed)])
    draws = draws[np.isfinite(draws)]
    alpha = (1 - level) / 2 * 100
    low, high = np.percentile(draws, [alpha, 100 - alpha]) if len(draws) else (np.nan, np.nan)
    return {"value": mean_over_repeats(units, statistic), "ci_low": float(low), "ci_high": float(high),
            "repeats": [statistic(units.y, row) for row in units.scores], "n_boot": n_boot}


def paired_comparison(candidate: Units, baseline: Units, statistic: Callable, n_boot: int = 1000, seed: int = 0,
                      level: float = 0.95) -> dict:
    """Candidate minus baseline on the same units, with one series resample shared by both.

    Returns:
        {"candidate", "baseline", "delta", "ci_low", "ci_high", "p_better"}: p_better is the share of
        resamples in which the candidate is ahead (a bootstrap estimate, not a test's p-value).
    """
    if not (np.array_equal(candidate.y, baseline.y) and np.array_equal(candidate.series, baseline.series)):
        raise ValueError("a paired comparison needs the same units, labels and series in both runs")
    deltas = []
    for index in _resamples(candidate, n_boot, seed):
        deltas.append(mean_over_repeats(candidate, statistic, index) - mean_over_repeats(baseline, statistic, index))
    deltas = np.asarray(deltas)
    deltas = deltas[np.isfinite(deltas)]
    alpha = (1 - level) / 2 * 100
    low, high = np.percentile(deltas, [alpha, 100 - alpha]) if len(deltas) else (np.nan, np.nan)
    a, b = mean_over_repeats(candidate, statistic), mean_over_repeats(baseline, statistic)
    return {"candidate": a, "baseline": b, "delta": a - b, "ci_low": float(low), "ci_high": float(high),
            "p_better": float(np.mean(deltas > 0)) if len(deltas) else float("nan"), "n_boot": n_boot}
