"""Series-level aggregation: one prediction per inferred series, so that a long series of
near-identical slices counts once, as a patient would."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np


def aggregate_by_group(labels: np.ndarray, probs: np.ndarray, groups: list[str]):
    """Mean class probabilities and majority label per group: (group ids, labels, probs)."""
    members: dict[str, list[int]] = defaultdict(list)
    for index, group in enumerate(groups):
        members[group].append(index)
    ids = sorted(members)
    series_labels = np.array([Counter(labels[members[g]].tolist()).most_common(1)[0][0] for g in ids])
    series_probs = np.stack([probs[members[g]].mean(axis=0) for g in ids])
    return ids, series_labels, series_probs
