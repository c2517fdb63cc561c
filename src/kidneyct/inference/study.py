"""The study call: one tumor answer for a series or volume from its slices, by the checkpoint's study rule
(kidneyct.evaluation.study, the one rule evaluate and cross-validation measure) over the in-scope slices."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kidneyct.evaluation.study import DEFAULT_RULE, LEGACY_RULE, StudyRule, rule_of, study_score

__all__ = ["DEFAULT_RULE", "LEGACY_RULE", "StudyCall", "StudyRule", "call_study", "rule_of", "study_score"]

NO_SCOPE = "no kidney found in this series: out of scope, no call"


@dataclass(frozen=True)
class StudyCall:
    probability: float | None  # None: no call (no slice in scope)
    tumor: bool | None
    driving_slices: list[int]  # slice indices the probability comes from, in slice order
    description: str


def call_study(tumor_probs, slice_indices: list[int], threshold: float, rule: StudyRule,
               in_scope=None) -> StudyCall:
    """The study's tumor probability and call under `rule` over its in-scope slices.

    Args:
        tumor_probs: calibrated tumor probability per slice, in slice order.
        slice_indices: each slice's index in its series or volume.
        threshold: the tumor operating threshold.
        rule: the checkpoint's study rule.
        in_scope: bool per slice (None: all in scope).

    Returns:
        A StudyCall; without an in-scope slice its probability and call are None and the description says so.
    """
    score = study_score(np.asarray(tumor_probs, np.float64), in_scope, rule)
    if score.probability is None:
        return StudyCall(None, None, [], NO_SCOPE)
    driving = [int(slice_indices[i]) for i in score.driving]
    description = f"{rule.describe(threshold)} ({score.n_in_scope} in scope)"
    return StudyCall(score.probability, score.probability >= threshold, driving, description)
