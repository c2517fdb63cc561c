"""Facts about class labels: which class is the positive (tumor) one, how class probabilities become
a decision under a tumor operating threshold, and the values of masks (docs/sources.md). Used from training to
serving; needs numpy only."""

from __future__ import annotations

import numpy as np

POSITIVE_CLASS = "tumor"
KAGGLE_CLASSES = ("Normal", "Cyst", "Tumor", "Stone")  # the class folders of the Kaggle CT kidney dataset

# Mask values, on the image's pixel grid. UNKNOWN never appears in mask files: it marks decoded masks (or pixels)
# without a label, which a loss ignores.
MASK_BACKGROUND, MASK_KIDNEY, MASK_TUMOR, MASK_CYST, MASK_UNKNOWN = 0, 1, 2, 3, 255


def positive_index(classes: list[str]) -> int | None:
    """Index of the tumor class in `classes` (case-insensitive), None when there is none."""
    lowered = [c.lower() for c in classes]
    return lowered.index(POSITIVE_CLASS) if POSITIVE_CLASS in lowered else None


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
