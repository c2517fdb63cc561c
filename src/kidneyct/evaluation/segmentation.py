"""Segmentation metrics on label maps in kidneyct's mask convention (0 background, 1 kidney, 2 tumor, 3 cyst,
255 unknown: docs/sources.md): tumor Dice and kidney Dice, each the median over the slices that hold the structure
in their true mask. Pixels unknown in the true mask count for neither side."""

from __future__ import annotations

import numpy as np

from kidneyct.labels import MASK_CYST, MASK_KIDNEY, MASK_TUMOR
from kidneyct.labels import MASK_UNKNOWN as UNKNOWN

KIDNEY_LABELS = (MASK_KIDNEY, MASK_TUMOR, MASK_CYST)  # the kidney with its masses (KiTS's "kidney and masses")
TUMOR_LABELS = (MASK_TUMOR,)


def dice(predicted: np.ndarray, true: np.ndarray) -> float:
    """Dice coefficient of two boolean maps; 1.0 when both are empty."""
    both = np.logical_and(predicted, true).sum()
    total = int(predicted.sum()) + int(true.sum())
    return 1.0 if total == 0 else float(2.0 * both / total)


def median_dice(predicted, true, labels: tuple[int, ...]) -> tuple[float, int]:
    """(median Dice of the region `labels`, slices counted) over the slices whose true mask is known and holds
    the region; NaN and 0 when none does.

    Args:
        predicted: label maps [N, H, W] (uint8), or None (no segmentation: NaN).
        true: the true label maps [N, H, W] (a sequence of arrays; rows that are all UNKNOWN are left out).
        labels: the labels that make up the region.
    """
    if predicted is None:
        return float("nan"), 0
    scores = []
    for guess, truth in zip(predicted, true):
        truth = np.asarray(truth)
        known = truth != UNKNOWN
        region = np.isin(truth, labels) & known
        if region.any():
            scores.append(dice(np.isin(np.asarray(guess), labels) & known, region))
    return (float(np.median(scores)), len(scores)) if scores else (float("nan"), 0)


def tumor_dice(predicted, true) -> tuple[float, int]:
    """Median tumor Dice over the slices whose true mask shows tumor."""
    return median_dice(predicted, true, TUMOR_LABELS)


def kidney_dice(predicted, true) -> tuple[float, int]:
    """Median Dice of the kidney with its masses over the slices whose true mask shows kidney."""
    return median_dice(predicted, true, KIDNEY_LABELS)
