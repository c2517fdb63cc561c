"""Calibration and the tumor operating point, both fitted on the validation split.

Temperature scaling (Guo et al. 2017): one scalar T divides the logits; T minimises the negative
log-likelihood of the validation labels (and is kept only if validation ECE does not rise). It changes
confidence, never the ranking or the argmax.
The operating point is a tumor-probability threshold (on the calibrated probabilities) applied by
predict and evaluate (kidneyct.labels.decide): a slice is called tumor when p(tumor) >= threshold, otherwise
the most probable other class. The calibration measures themselves are kidneyct.evaluation.calibration's.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from kidneyct.checkpoint import Calibration, CalibrationCheck, OperatingPoint
from kidneyct.evaluation.calibration import calibration_summary, logits_tensor, nll, softmax
from kidneyct.labels import positive_index

log = logging.getLogger(__name__)

TEMPERATURE_BOUNDS = (0.05, 20.0)


def fit_temperature(logits, labels) -> float:
    """The temperature minimising validation NLL (bounded search over log T).

    T = 1 is kept unless the fit does better, so calibration never worsens validation NLL.
    """
    logits, labels = logits_tensor(logits), torch.as_tensor(np.asarray(labels))
    if len(labels) == 0:
        return 1.0
    low, high = (math.log(b) for b in TEMPERATURE_BOUNDS)
    result = minimize_scalar(lambda log_t: nll(logits, labels, math.exp(log_t)), bounds=(low, high),
                             method="bounded", options={"xatol": 1e-4})
    fitted = float(math.exp(result.x))
    return fitted if nll(logits, labels, fitted) < nll(logits, labels, 1.0) else 1.0


# ----------------------------------------------------------------------------------------------
# Operating point


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
                    target_sensitivity: float | None = None) -> OperatingPoint | None:
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
    return OperatingPoint(
        float(threshold), method, classes[pos], target_sensitivity,
        float(called[is_tumor].mean()) if is_tumor.any() else float("nan"),
        float((~called[~is_tumor]).mean()) if (~is_tumor).any() else float("nan"), int(len(labels)))


def fit_calibration(val_logits, val_labels, classes: list[str], threshold: float | None = None,
                    target_sensitivity: float | None = None) -> tuple[Calibration, OperatingPoint | None]:
    """The temperature (and operating point) fitted on validation logits.

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
    calibration = Calibration(temperature, "temperature scaling, NLL on the validation split", fitted, kept, at_bound,
                              CalibrationCheck.from_dict(summary))
    point = operating_point(softmax(val_logits, temperature), val_labels, classes, threshold, target_sensitivity)
    return calibration, point
