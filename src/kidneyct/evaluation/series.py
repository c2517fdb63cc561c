"""Series-level aggregation: one prediction per inferred series, so that a long series of
near-identical slices counts once, as a patient would."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from kidneyct.study.rule import StudyRule, study_score
from kidneyct.labels import positive_index


def aggregate_by_group(labels: np.ndarray, probs: np.ndarray, groups: list[str], rule: StudyRule | None = None,
                       classes: list[str] | None = None):
    """Class probabilities and majority label per group: (group ids, labels, probs).

    Args:
        labels: class index per slice.
        probs: class probabilities per slice [N, K].
        groups: series id per slice.
        rule: the study rule for the tumor probability (needs `classes` with a tumor class); None: the mean
            of every class's probability.
        classes: class names, in the columns' order.

    Returns:
        (sorted group ids, majority label per group, probabilities per group [G, K]). Under a rule the tumor
        column is the rule's study probability and the other classes share the rest in proportion to their
        mean probabilities, so rows still sum to 1.
    """
    members: dict[str, list[int]] = defaultdict(list)
    for index, group in enumerate(groups):
        members[group].append(index)
    ids = sorted(members)
    series_labels = np.array([Counter(labels[members[g]].tolist()).most_common(1)[0][0] for g in ids])
    series_probs = np.stack([probs[members[g]].mean(axis=0) for g in ids])
    pos = positive_index(classes) if rule is not None and classes is not None else None
    if pos is not None:
        for row, g in enumerate(ids):
            tumor = study_score(probs[members[g], pos], rule=rule).probability
            others = np.delete(series_probs[row], pos)
            share = others / others.sum() if others.sum() > 0 else np.full(len(others), 1.0 / max(len(others), 1))
            series_probs[row] = np.insert(share * (1.0 - tumor), pos, tumor)
    return ids, series_labels, series_probs
