"""Metric tables with a row per source and a pooled row: slice ROC-AUC, sensitivity at specificity 0.90 and
specificity at sensitivity 0.90 (mean over repeats, percentile-bootstrap intervals over series or patients),
sensitivity and specificity at the operating threshold, the same per series (or patient) for sources whose
groups hold several slices, and tumor and kidney Dice where a model segments (n/a otherwise).

So that cross-hospital transfer is a number: a model that ranks one source's slices well and another's badly
shows it, and a source of normal slices only (no ROC-AUC) still shows how many it calls tumor."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kidneyct.evaluation import tables
from kidneyct.evaluation.ranking import RANKING_STATISTICS, Units, bootstrap_interval
from kidneyct.evaluation.segmentation import kidney_dice, tumor_dice
from kidneyct.study.rule import DEFAULT_RULE, StudyRule, study_score

POOLED = "pooled"
STATISTIC_HEADERS = {"roc_auc": "ROC-AUC", "sensitivity_at_specificity_90": "sensitivity at specificity 0.90",
                     "specificity_at_sensitivity_90": "specificity at sensitivity 0.90"}


@dataclass(frozen=True)
class Scored:
    """R repeats of tumor scores over N slices, with what a per-source table needs of each slice.

    Args:
        sources: the source of each slice.
        groups: its series or patient (unique across sources).
        is_tumor: bool [N], the slice is a tumor slice.
        negative: bool [N], the slice is a negative of the question asked (tumor vs normal: a Normal slice);
            slices neither tumor nor negative are left out of the ranking statistics.
        scores: float [R, N], p(tumor).
        called: bool [R, N], called tumor at the operating threshold; None when there is none.
        true_masks: the slices' true label maps (docs/sources.md), or None.
        predicted_masks: a segmenting model's label maps, or None (the Dice columns read n/a).
    """

    sources: list[str]
    groups: list[str]
    is_tumor: np.ndarray
    negative: np.ndarray
    scores: np.ndarray
    called: np.ndarray | None = None
    true_masks: Sequence | None = None
    predicted_masks: Sequence | None = None


def group_units(is_tumor: np.ndarray, scores: np.ndarray, groups: Sequence[str],
                rule: StudyRule = DEFAULT_RULE) -> Units:
    """One unit per group: tumor when most of its slices are, scored by the study rule over its slices."""
    ids, inverse = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    members = [np.flatnonzero(inverse == i) for i in range(len(ids))]
    grouped = np.array([[study_score(row[m], rule=rule).probability for m in members] for row in scores])
    y = (np.bincount(inverse, weights=is_tumor, minlength=len(ids)) / np.bincount(inverse) >= 0.5).astype(int)
    return Units.of(y, grouped, ids)


def _intervals(units: Units, n_boot: int, seed: int) -> dict:
    if not 0 < units.y.sum() < len(units.y):  # one class only: nothing to rank, no resampling needed
        nan = float("nan")
        return {name: {"value": nan, "ci_low": nan, "ci_high": nan} for name in RANKING_STATISTICS}
    return {name: bootstrap_interval(units, statistic, n_boot, seed) for name, statistic in RANKING_STATISTICS.items()}


def _rate(called: np.ndarray | None, chosen: np.ndarray, value: bool) -> float:
    """Share of the chosen slices called `value` (tumor or not), mean over repeats; NaN without any."""
    if called is None or not chosen.any():
        return float("nan")
    return float(np.mean([np.mean(row[chosen] == value) for row in called]))


def source_row(scored: Scored, index: np.ndarray, per_group: bool, n_boot: int, seed: int = 0,
               rule: StudyRule = DEFAULT_RULE, known: dict | None = None) -> dict:
    """The numbers of the slices at `index` (one source, or all of them). `known` may hold their intervals
    already computed ({"image": ..., "series": ...}, as cv_report.ranking gives them for every slice of a run):
    then they are taken, not bootstrapped again."""
    tumor, negative = scored.is_tumor[index], scored.negative[index]
    asked = index[tumor | negative]
    groups = np.asarray(scored.groups, dtype=str)
    y = scored.is_tumor[asked].astype(int)
    called = None if scored.called is None else scored.called[:, index]
    row = {"images": int(len(index)), "tumor": int(tumor.sum()), "negative": int(negative.sum()),
           "groups": int(len(set(groups[index]))), "group": None,
           "sensitivity": _rate(called, tumor, True), "specificity": _rate(called, negative, False)}
    row["image"] = _known(known, "image") or _intervals(Units.of(y, scored.scores[:, asked], groups[asked]),
                                                        n_boot, seed)
    if per_group and len(asked):
        row["group"] = _known(known, "series") or _intervals(group_units(y, scored.scores[:, asked], groups[asked],
                                                                         rule), n_boot, seed)
    predicted = truth = None
    if scored.predicted_masks is not None and scored.true_masks is not None:  # else n/a, and no mask is read
        predicted = [scored.predicted_masks[i] for i in index]
        truth = [scored.true_masks[i] for i in index]
    row["tumor_dice"], row["tumor_dice_slices"] = tumor_dice(predicted, truth)
    row["kidney_dice"], row["kidney_dice_slices"] = kidney_dice(predicted, truth)
    return row


def per_source_table(scored: Scored, group_sources: set[str], n_boot: int, seed: int = 0,
                     rule: StudyRule = DEFAULT_RULE, pooled: dict | None = None) -> dict[str, dict]:
    """{source: row, ..., "pooled": row}, sources in order of first appearance; per-group numbers for the
    sources in `group_sources` (those whose series or patients hold several slices) and for the pooled row.
    `pooled`: the pooled intervals when already computed (see `source_row`'s `known`)."""
    names = list(dict.fromkeys(scored.sources))
    where = np.asarray(scored.sources, dtype=object)
    everything = source_row(scored, np.arange(len(scored.sources)), bool(group_sources & set(names)), n_boot, seed,
                            rule, pooled)
    if len(names) == 1:  # the pooled slices are that source's
        return {names[0]: everything, POOLED: dict(everything)}
    table = {name: source_row(scored, np.flatnonzero(where == name), name in group_sources, n_boot, seed, rule)
             for name in names}
    table[POOLED] = everything
    return table


def _known(known: dict | None, level: str) -> dict | None:
    if not known or level not in known:
        return None
    return {name: known[level][name] for name in RANKING_STATISTICS}


def _interval_cell(entry: dict) -> str:
    if entry["value"] != entry["value"]:
        return tables.NOT_AVAILABLE
    return f"{entry['value']:.3f} [{entry['ci_low']:.3f}, {entry['ci_high']:.3f}]"


def _rate_cell(value: float) -> str:
    return tables.NOT_AVAILABLE if value != value else f"{value:.3f}"


def _dice_cell(value: float, slices: int) -> str:
    return tables.NOT_AVAILABLE if value != value else f"{value:.3f} ({slices} slices)"


def table_lines(table: dict[str, dict], question: str) -> list[str]:
    """Markdown: a per-slice table (every source and the pooled row) and a per series/patient table (the
    sources that have one)."""
    statistics = list(STATISTIC_HEADERS)
    header = ["source", "slices (tumor / negative)", *STATISTIC_HEADERS.values(), "sensitivity at the threshold",
              "specificity at the threshold", "tumor Dice (median)", "kidney Dice (median)"]
    rows = [[name, f"{row['images']} ({row['tumor']} / {row['negative']})",
             *(_interval_cell(row["image"][s]) for s in statistics), _rate_cell(row["sensitivity"]),
             _rate_cell(row["specificity"]), _dice_cell(row["tumor_dice"], row["tumor_dice_slices"]),
             _dice_cell(row["kidney_dice"], row["kidney_dice_slices"])] for name, row in table.items()]
    lines = [f"Per slice, {question}; mean over repeats [95% bootstrap interval over series or patients]; "
             "thresholds are each fold's own; Dice on the slices whose true mask shows the structure:", ""]
    lines += tables.markdown_table(header, rows)
    grouped = [[name, str(row["groups"]), *(_interval_cell(row["group"][s]) for s in statistics)]
               for name, row in table.items() if row["group"] is not None]
    if grouped:
        lines += ["", "Per series or patient (the study rule over its slices):", ""]
        lines += tables.markdown_table(["source", "groups", *STATISTIC_HEADERS.values()], grouped)
    return lines
