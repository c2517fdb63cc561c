"""Classification metrics with bootstrap 95% confidence intervals.

Point estimates use scikit-learn. Intervals are percentile bootstraps; when groups (series) are given,
the bootstrap resamples whole groups, because slices of one series are not independent observations.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score

from kidneyct.labels import positive_index


def _from_confusion(cm: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, per-class and macro precision/recall/F1, balanced accuracy, tumor sens/spec."""
    cm = cm.astype(np.float64)
    total = cm.sum()
    tp = np.diag(cm)
    predicted, actual = cm.sum(0), cm.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, np.nan)
        f1 = np.where(precision + np.nan_to_num(recall) > 0,
                      2 * precision * recall / (precision + recall), 0.0)
    present = actual > 0
    out = {
        "accuracy": float(tp.sum() / total) if total else float("nan"),
        "balanced_accuracy": float(np.nanmean(recall[present])) if present.any() else float("nan"),
        "macro_precision": float(np.mean(precision[present])) if present.any() else float("nan"),
        "macro_recall": float(np.nanmean(recall[present])) if present.any() else float("nan"),
        "macro_f1": float(np.nanmean(np.where(present, f1, np.nan))) if present.any() else float("nan"),
    }
    for i, name in enumerate(classes):
        key = name.lower()
        out[f"precision_{key}"] = float(precision[i])
        out[f"recall_{key}"] = float(recall[i])
        out[f"f1_{key}"] = float(f1[i])
    pos = positive_index(classes)
    if pos is not None:
        negatives = total - actual[pos]
        true_negative = negatives - (predicted[pos] - tp[pos])
        out["tumor_sensitivity"] = float(recall[pos])
        out["tumor_specificity"] = float(true_negative / negatives) if negatives else float("nan")
    return out


def _ranking(y: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    """ROC-AUC and PR-AUC: tumor-vs-rest when there is a tumor class, else macro one-vs-rest."""
    out = {}
    pos = positive_index(classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if pos is not None:
            target = (y == pos).astype(int)
            if 0 < target.sum() < len(target):
                out["roc_auc"] = float(roc_auc_score(target, probs[:, pos]))
                out["pr_auc"] = float(average_precision_score(target, probs[:, pos]))
        if len(classes) > 2 and len(np.unique(y)) == len(classes):
            out["macro_roc_auc"] = float(roc_auc_score(y, probs, multi_class="ovr", average="macro",
                                                       labels=list(range(len(classes)))))
            onehot = np.eye(len(classes))[y]
            out["macro_pr_auc"] = float(average_precision_score(onehot, probs, average="macro"))
    return out


def point_metrics(y: np.ndarray, probs: np.ndarray, classes: list[str], predictions: np.ndarray | None = None) -> dict:
    y = np.asarray(y, int)
    predictions = probs.argmax(1) if predictions is None else np.asarray(predictions, int)
    cm = confusion_matrix(y, predictions, labels=list(range(len(classes))))
    return {**_from_confusion(cm, classes), **_ranking(y, probs, classes), "n": int(len(y))}


def bootstrap_metrics(
    y: np.ndarray, probs: np.ndarray, classes: list[str], predictions: np.ndarray | None = None,
    groups: list | None = None, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
) -> dict:
    """{metric: {"value", "ci_low", "ci_high"}} plus the confusion matrix and its row-rate intervals."""
    y = np.asarray(y, int)
    predictions = probs.argmax(1) if predictions is None else np.asarray(predictions, int)
    k = len(classes)
    point = point_metrics(y, probs, classes, predictions)
    rng = np.random.default_rng(seed)
    if groups is None:
        units = [np.array([i]) for i in range(len(y))]
    else:
        _, inverse = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
        units = [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]
    samples: dict[str, list[float]] = {name: [] for name, value in point.items() if name != "n"}
    rates = []
    for _ in range(n_boot):
        chosen = rng.integers(0, len(units), len(units))
        index = np.concatenate([units[c] for c in chosen])
        cm = np.bincount(y[index] * k + predictions[index], minlength=k * k).reshape(k, k)
        values = {**_from_confusion(cm, classes), **_ranking(y[index], probs[index], classes)}
        for name in samples:
            samples[name].append(values.get(name, np.nan))
        with np.errstate(invalid="ignore", divide="ignore"):
            rates.append(cm / cm.sum(1, keepdims=True))
    alpha = (1 - level) / 2 * 100
    result = {"n": point["n"], "n_units": len(units), "bootstrap": {"n_boot": n_boot, "level": level,
              "unit": "image" if groups is None else "series"}}
    for name, value in point.items():
        if name == "n":
            continue
        draws = np.asarray(samples[name], float)
        draws = draws[np.isfinite(draws)]
        low, high = (np.percentile(draws, [alpha, 100 - alpha]) if len(draws) else (np.nan, np.nan))
        result[name] = {"value": value, "ci_low": float(low), "ci_high": float(high)}
    cm = confusion_matrix(y, predictions, labels=list(range(k)))
    stacked = np.asarray(rates)
    result["confusion_matrix"] = {
        "labels": classes, "counts": cm.tolist(),
        "row_rate": (cm / np.maximum(cm.sum(1, keepdims=True), 1)).tolist(),
        "row_rate_ci_low": np.nan_to_num(np.nanpercentile(stacked, alpha, axis=0)).tolist(),
        "row_rate_ci_high": np.nan_to_num(np.nanpercentile(stacked, 100 - alpha, axis=0)).tolist(),
    }
    return result
