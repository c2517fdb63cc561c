"""The study rule: one tumor probability for a series, volume or inferred series from its slices' calibrated
tumor probabilities. One function, `study_score`, used by predict, serve, evaluate, cross-validation and the
reports, so that what is measured is what ships; its parameters (`StudyRule`) are stored in checkpoints, and
`call_study` turns the score into the call that every prediction front end reports."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kidneyct.records import DictRecord

KINDS = ("mean", "max", "top_k", "top_fraction", "noisy_or")


@dataclass(frozen=True)
class StudyRule(DictRecord):
    """How slice tumor probabilities become the study's.

    kind: "mean" (all slices), "max", "top_k" (mean of the k highest), "top_fraction" (mean of the highest
    `fraction` of the slices, at least one) or "noisy_or" (1 - prod(1 - p): any one slice may carry the
    tumor). Only the slices in scope count (see kidneyct.inference.scope)."""

    kind: str = "top_k"
    k: int = 3
    fraction: float = 0.25

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown study rule {self.kind!r}; choose from {KINDS}")
        if self.k < 1 or not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"study rule needs k >= 1 and 0 < fraction <= 1, got k={self.k}, fraction={self.fraction}")

    @property
    def name(self) -> str:
        """Short name, e.g. 'top-3 mean', 'top-25% mean'."""
        if self.kind == "top_k":
            return f"top-{self.k} mean"
        if self.kind == "top_fraction":
            return f"top-{self.fraction:.0%} mean"
        return {"mean": "mean", "max": "max", "noisy_or": "noisy-OR"}[self.kind]

    def describe(self, threshold: float | None = None) -> str:
        """One sentence for reports and answers."""
        text = f"study tumor probability = {self.name} of the in-scope slices' tumor probabilities"
        return text + (f"; tumor when it reaches {threshold:g}" if threshold is not None else "")


# Checkpoints written before the rule was stored were used with the top-3 mean.
LEGACY_RULE = StudyRule("top_k", k=3)
# Chosen by benchmarks/study_rule.py (benchmarks/results/study-rule.json; docs/study-reports.md): on the default
# recipe's grouped cross-validation series every candidate ties with the mean (per-series ROC-AUC 0.59-0.63, paired
# differences within +-0.08); on 40 pelvis-to-liver phantom volumes, whose tumors show on about half of the
# in-scope slices, the top-3 mean has the best ROC-AUC (0.895; the mean 0.823) and sensitivity at specificity
# 0.90 (0.80; the mean 0.50).
DEFAULT_RULE = StudyRule("top_k", k=3)


@dataclass(frozen=True)
class StudyScore:
    probability: float | None  # None: no slice in scope, no call
    driving: list[int]  # positions (into the given arrays) of the slices the probability comes from, in order
    n_in_scope: int


def study_score(slice_probs, in_scope=None, rule: StudyRule = DEFAULT_RULE) -> StudyScore:
    """The study's tumor probability under `rule`, from the in-scope slices only.

    Args:
        slice_probs: calibrated tumor probabilities of the study's slices, in slice order.
        in_scope: bool per slice (None: all in scope); out-of-scope slices never drive a call.
        rule: the StudyRule (the checkpoint's `study.rule`).

    Returns:
        A StudyScore: the probability (None without an in-scope slice), the driving slices' positions and
        the number of in-scope slices.
    """
    probs = np.asarray(slice_probs, np.float64)
    chosen = np.flatnonzero(np.ones(len(probs), bool) if in_scope is None else np.asarray(in_scope, bool))
    if len(chosen) == 0:
        return StudyScore(None, [], 0)
    values = probs[chosen]
    order = chosen[np.argsort(-values, kind="stable")]  # highest first
    if rule.kind == "mean":
        probability, driving = float(values.mean()), chosen
    elif rule.kind == "noisy_or":
        probability, driving = float(1.0 - np.prod(1.0 - np.clip(values, 0.0, 1.0))), chosen
    else:
        count = {"max": 1, "top_k": rule.k, "top_fraction": math.ceil(rule.fraction * len(chosen))}[rule.kind]
        driving = order[:max(1, min(count, len(chosen)))]
        probability = float(probs[driving].mean())
    return StudyScore(probability, sorted(int(i) for i in driving), len(chosen))


# Said with every no-call: a mass that has taken the kidney's place is not found as kidney either.
NO_SCOPE = "no kidney found in this series: out of scope, no call (not assessed, not a negative result)"


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
