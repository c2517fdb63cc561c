"""How results read in reports: the metrics and their labels, one cell format per kind of value, one
Markdown table. The evaluation report, the split comparison and cross-validation all use these."""

from __future__ import annotations

METRIC_LABELS = {
    "accuracy": "Accuracy", "balanced_accuracy": "Balanced accuracy", "macro_precision": "Macro precision",
    "macro_recall": "Macro recall", "macro_f1": "Macro F1", "tumor_sensitivity": "Tumor sensitivity",
    "tumor_specificity": "Tumor specificity", "roc_auc": "ROC-AUC (tumor vs rest)",
    "pr_auc": "PR-AUC (tumor vs rest)", "macro_roc_auc": "ROC-AUC (macro one-vs-rest)",
    "macro_pr_auc": "PR-AUC (macro one-vs-rest)",
}
# (metric, label) pairs: every summary metric of an evaluation report, and the headline ones that comparisons
# and cross-validation tabulate side by side.
SUMMARY_METRICS = list(METRIC_LABELS.items())
HEADLINE_METRICS = [(key, METRIC_LABELS[key]) for key in (
    "accuracy", "balanced_accuracy", "tumor_sensitivity", "tumor_specificity", "roc_auc", "macro_f1")]
NOT_AVAILABLE = "n/a"


def _defined(entry) -> bool:
    return isinstance(entry, dict) and entry["value"] == entry["value"]  # NaN: undefined (e.g. one class only)


def value_and_interval(entry) -> tuple[str, str]:
    """A bootstrapped metric {"value", "ci_low", "ci_high"} as ("0.912", "0.871 - 0.948"); ("n/a", "") when
    it is missing or undefined."""
    if not _defined(entry):
        return NOT_AVAILABLE, ""
    return f"{entry['value']:.3f}", f"{entry['ci_low']:.3f} - {entry['ci_high']:.3f}"


def interval_cell(entry) -> str:
    """A bootstrapped metric in one cell: "0.912 (0.871 - 0.948)", or "n/a"."""
    value, interval = value_and_interval(entry)
    return f"{value} ({interval})" if interval else value


def mean_sd_cell(entry: dict) -> str:
    """A metric over folds {"mean", "std", "n"}: "0.912 ± 0.031", the mean alone from one fold, "n/a" from none."""
    if entry["n"] == 0:
        return NOT_AVAILABLE
    return f"{entry['mean']:.3f} ± {entry['std']:.3f}" if entry["n"] > 1 else f"{entry['mean']:.3f}"


def markdown_table(header: list[str], rows) -> list[str]:
    """The lines of a Markdown table; cells are written with str()."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
