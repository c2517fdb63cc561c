"""Calibration measures: negative log-likelihood, reliability bins and the expected calibration error (ECE) of
temperature-scaled probabilities. Fitting the temperature is training's (kidneyct.training.calibration)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

ECE_BINS = 15


def logits_tensor(logits) -> torch.Tensor:
    """Logits (array-like [N, K]) as float64, the precision temperature fitting and NLL work in."""
    return torch.as_tensor(np.asarray(logits), dtype=torch.float64)


def nll(logits, labels, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of `labels` under softmax(logits / temperature)."""
    return float(F.cross_entropy(logits_tensor(logits) / temperature, torch.as_tensor(np.asarray(labels))))


def softmax(logits, temperature: float = 1.0) -> np.ndarray:
    return torch.softmax(logits_tensor(logits) / temperature, dim=1).numpy()


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
