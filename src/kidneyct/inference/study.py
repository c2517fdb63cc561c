"""The study rule: one tumor call for a series or volume from its slices' tumor probabilities."""

from __future__ import annotations

import numpy as np

DEFAULT_TOP_K = 3
AGGREGATION = ("study tumor probability = mean of the {k} highest slice tumor probabilities "
               "(top-k, k = min({top_k}, slices)); tumor when it reaches {threshold:g}; "
               "driving slices = those {k} slices")


def aggregate_study(tumor_probs: np.ndarray, slice_indices: list[int], threshold: float,
                    top_k: int = DEFAULT_TOP_K) -> tuple[float, bool, list[int], str]:
    """Top-k mean: one confident slice can not make a study positive alone when k > 1, yet a lesion
    seen on a few slices of a long series is not diluted by the many normal ones."""
    tumor_probs = np.asarray(tumor_probs, np.float64)
    k = max(1, min(top_k, len(tumor_probs)))
    top = np.argsort(-tumor_probs, kind="stable")[:k]
    probability = float(tumor_probs[top].mean())
    description = AGGREGATION.format(k=k, top_k=top_k, threshold=threshold)
    return probability, probability >= threshold, sorted(int(slice_indices[i]) for i in top), description
