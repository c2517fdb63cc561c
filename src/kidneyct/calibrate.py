"""Calibration and the tumor operating point, both fitted on the validation split.

Temperature scaling (Guo et al. 2017): one scalar T divides the logits; T minimises the negative
log-likelihood of the validation labels (and is kept only if validation ECE does not rise). It changes
confidence, never the ranking or the argmax.
The operating point is a tumor-probability threshold (on the calibrated probabilities) applied by
predict and evaluate: a slice is called tumor when p(tumor) >= threshold, otherwise the most
probable other class.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar

from kidneyct.evaluate.metrics import positive_index

log = logging.getLogger(__name__)

TEMPERATURE_BOUNDS = (0.05, 20.0)
ECE_BINS = 15


def _as_tensor(logits) -> torch.Tensor:
    return torch.as_tensor(np.asarray(logits), dtype=torch.float64)


def nll(logits, labels, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of `labels` under softmax(logits / temperature)."""
    return float(F.cross_entropy(_as_tensor(logits) / temperature, torch.as_tensor(np.asarray(labels))))


def softmax(logits, temperature: float = 1.0) -> np.ndarray:
    return torch.softmax(_as_tensor(logits) / temperature, dim=1).numpy()


def fit_temperature(logits, labels) -> float:
    """The temperature minimising validation NLL (bounded search over log T).

    T = 1 is kept unless the fit does better, so calibration never worsens validation NLL.
    """
    logits, labels = _as_tensor(logits), torch.as_tensor(np.asarray(labels))
    if len(labels) == 0:
        return 1.0
    low, high = (math.log(b) for b in TEMPERATURE_BOUNDS)
    result = minimize_scalar(lambda log_t: nll(logits, labels, math.exp(log_t)), bounds=(low, high),
                             method="bounded", options={"xatol": 1e-4})
    fitted = float(math.exp(result.x))
    return fitted if nll(logits, labels, fitted) < nll(logits, labels, 1.0) else 1.0


def reliability_bins(probs: np.ndarray, labels, n_bins: int = ECE_BINS) -> dict:
    """Top-label confidence vs accuracy in equal-width confidence bins (empty bins have count 0)."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    confidence = probs.max(1)
    correct = (probs.argmax(1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(which, confidence, n_bins) / count
        accuracy = np.bincount(which, correct, n_bins) / count
    return {"edges": edges, "count": count, "confidence": mean_confidence, "accuracy": accuracy}


def expected_calibration_error(probs: np.ndarray, labels, n_bins: int = ECE_BINS) -> float:
    """ECE: the count-weighted mean |accuracy - confidence| over equal-width top-label confidence bins."""
    bins = reliability_bins(probs, labels, n_bins)
    total = bins["count"].sum()
    if total == 0:
        return float("nan")
    used = bins["count"] > 0
    gaps = np.abs(bins["accuracy"][used] - bins["confidence"][used])
    return float((bins["count"][used] * gaps).sum() / total)


def calibration_summary(logits, labels, temperature: float, n_bins: int = ECE_BINS) -> dict:
    return {
        "n": int(len(labels)),
        "nll_before": nll(logits, labels, 1.0), "nll_after": nll(logits, labels, temperature),
        "ece_before": expected_calibration_error(softmax(logits), labels, n_bins),
        "ece_after": expected_calibration_error(softmax(logits, temperature), labels, n_bins),
        "ece_bins": n_bins,
    }


def reliability_plot(labels, probs_before: np.ndarray, probs_after: np.ndarray, path: Path,
                     n_bins: int = ECE_BINS) -> Path:
    """Reliability diagram: accuracy per confidence bin before and after temperature scaling."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    ax.plot([0, 1], [0, 1], "k:", lw=0.8, label="perfect calibration")
    for name, probs, marker in (("before", probs_before, "o"), ("after", probs_after, "s")):
        bins = reliability_bins(probs, labels, n_bins)
        used = bins["count"] > 0
        ece = expected_calibration_error(probs, labels, n_bins)
        ax.plot(bins["confidence"][used], bins["accuracy"][used], marker=marker, ms=4,
                label=f"{name} temperature scaling (ECE {ece:.3f})")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("confidence (top-label probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability diagram ({n_bins} bins)")
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------
# Operating point


def decide(probs: np.ndarray, classes: list[str], threshold: float | None) -> np.ndarray:
    """Class decisions: argmax, or with a threshold: tumor when p(tumor) >= threshold, else the most
    probable other class."""
    probs = np.asarray(probs)
    predictions = probs.argmax(1)
    pos = positive_index(classes)
    if threshold is None or pos is None or len(probs) == 0:
        return predictions
    others = probs.copy()
    others[:, pos] = -np.inf
    return np.where(probs[:, pos] >= threshold, pos, others.argmax(1))


def threshold_for_sensitivity(tumor_probs: np.ndarray, is_tumor: np.ndarray, target: float) -> float:
    """The highest threshold whose sensitivity (share of tumors with p >= threshold) reaches `target`:
    any lower threshold would only lose specificity."""
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target sensitivity must be in (0, 1], got {target}")
    positives = np.sort(np.asarray(tumor_probs)[np.asarray(is_tumor, bool)])[::-1]
    if len(positives) == 0:
        raise ValueError("the validation split has no tumor images to choose a threshold on")
    needed = math.ceil(target * len(positives) - 1e-9)  # this many tumors must be at or above it
    return float(positives[needed - 1])


def operating_point(probs: np.ndarray, labels, classes: list[str], threshold: float | None = None,
                    target_sensitivity: float | None = None) -> dict | None:
    """A fixed `threshold` or the one reaching `target_sensitivity` on these (validation) data, with
    the sensitivity and specificity it gives there. None when neither is asked for."""
    if threshold is None and target_sensitivity is None:
        return None
    pos = positive_index(classes)
    if pos is None:
        raise ValueError(f"a tumor threshold needs a tumor class; classes are {classes}")
    probs, labels = np.asarray(probs), np.asarray(labels)
    is_tumor = labels == pos
    if threshold is None:
        threshold = threshold_for_sensitivity(probs[:, pos], is_tumor, target_sensitivity)
        method = f"highest threshold reaching sensitivity {target_sensitivity} on the validation split"
    else:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        method = "fixed threshold given at training"
    called = probs[:, pos] >= threshold
    return {
        "class": classes[pos], "threshold": float(threshold), "method": method,
        "target_sensitivity": target_sensitivity,
        "val_sensitivity": float(called[is_tumor].mean()) if is_tumor.any() else float("nan"),
        "val_specificity": float((~called[~is_tumor]).mean()) if (~is_tumor).any() else float("nan"),
        "val_n": int(len(labels)),
    }


def calibrate_checkpoint(payload: dict, val_logits, val_labels, threshold: float | None = None,
                         target_sensitivity: float | None = None) -> dict:
    """Fit the temperature (and operating point) on validation logits; returns the updated payload.

    The NLL-optimal temperature is kept only if it does not raise validation ECE: on a model that is
    already well calibrated the two criteria can disagree by noise, and then T = 1 is the honest choice.
    """
    fitted = fit_temperature(val_logits, val_labels)
    summary = calibration_summary(val_logits, val_labels, fitted)
    kept = summary["ece_after"] <= summary["ece_before"]
    temperature = fitted if kept else 1.0
    if not kept:
        log.info("temperature %.3f lowers validation NLL but raises ECE (%.4f -> %.4f): keeping T = 1",
                 fitted, summary["ece_before"], summary["ece_after"])
        summary = calibration_summary(val_logits, val_labels, temperature)
    at_bound = any(math.isclose(fitted, b, rel_tol=1e-3) for b in TEMPERATURE_BOUNDS)
    if at_bound:
        log.warning("fitted temperature %.3g sits at its search bound: the validation split is too small "
                    "or too easy to calibrate on", fitted)
    payload["calibration"] = {
        "temperature": temperature, "method": "temperature scaling, NLL on the validation split",
        "nll_optimal_temperature": fitted, "kept": kept, "at_bound": at_bound,
        **{f"val_{k}": v for k, v in summary.items()},
    }
    point = operating_point(softmax(val_logits, temperature), val_labels, payload["classes"], threshold,
                            target_sensitivity)
    payload["threshold"] = None if point is None else point["threshold"]
    payload["operating_point"] = point
    return payload
