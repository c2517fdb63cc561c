"""Which study rule separates tumor series from the rest best: candidate rules compared on the out-of-fold
predictions of a grouped cross-validation.

    python benchmarks/study_rule.py runs/cv-x/predictions.csv [--out benchmarks/results/study-rule.json]

Each inferred series (the `group` column) is scored by every candidate rule of kidneyct.evaluation.study over
its slices' out-of-fold tumor probabilities, per repeat. Printed per rule: per-series ROC-AUC and the
sensitivity at specificity 0.90 (mean over repeats, 95% bootstrap interval over series), and the paired
difference in ROC-AUC against the plain mean. The rule with the best ROC-AUC (then sensitivity) is named.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from kidneyct.evaluation.ranking import (Units, bootstrap_interval, paired_comparison, roc_auc,
                                         sensitivity_at_specificity)
from kidneyct.evaluation.study import StudyRule, study_score
from kidneyct.experiments.cv_report import OutOfFold, evaluations, read_out_of_fold

CANDIDATES = [StudyRule("mean"), StudyRule("max"), StudyRule("top_k", k=3), StudyRule("top_k", k=5),
              StudyRule("top_k", k=10), StudyRule("top_fraction", fraction=0.1),
              StudyRule("top_fraction", fraction=0.25), StudyRule("top_fraction", fraction=0.5),
              StudyRule("noisy_or")]
STATISTICS = {"roc_auc": roc_auc, "sensitivity_at_specificity_90": sensitivity_at_specificity}


def series_units(oof: OutOfFold, negatives: tuple[str, ...] | None, rule: StudyRule) -> Units:
    """One unit per series: tumor when most of its slices are, scored by `rule` in every repeat."""
    is_tumor = np.array([o.lower() == "tumor" for o in oof.origins])
    chosen = np.flatnonzero(is_tumor | np.array([negatives is None or o in negatives for o in oof.origins]))
    series = np.array(oof.series)[chosen]
    ids = sorted(set(series))
    members = [chosen[series == g] for g in ids]
    y = np.array([int(is_tumor[m].mean() >= 0.5) for m in members])
    scores = np.array([[study_score(row[m], rule=rule).probability for m in members] for row in oof.tumor])
    return Units.of(y, scores, ids)


def compare_rules(oof: OutOfFold, n_boot: int) -> dict:
    """{evaluation: {rule name: {statistic: interval, "vs_mean": paired AUC difference}}} and the choice."""
    out = {}
    for evaluation in evaluations(oof.origins):
        units = {rule.name: series_units(oof, evaluation.negatives, rule) for rule in CANDIDATES}
        baseline = units["mean"]
        rows = {}
        for rule in CANDIDATES:
            unit = units[rule.name]
            rows[rule.name] = {"rule": rule.to_dict(),
                               **{name: bootstrap_interval(unit, stat, n_boot) for name, stat in STATISTICS.items()},
                               "vs_mean_roc_auc": paired_comparison(unit, baseline, roc_auc, n_boot)}
        best = max(rows, key=lambda name: (round(rows[name]["roc_auc"]["value"], 6),
                                           rows[name]["sensitivity_at_specificity_90"]["value"]))
        out[evaluation.name] = {"series": len(baseline.y), "tumor_series": int(baseline.y.sum()),
                                "repeats": int(len(baseline.scores)), "rules": rows, "best": best}
    return out


def _cell(interval: dict) -> str:
    return f"{interval['value']:.3f} [{interval['ci_low']:.3f}, {interval['ci_high']:.3f}]"


def table(result: dict) -> str:
    lines = []
    for name, entry in result.items():
        lines += [f"## {name}: {entry['series']} series ({entry['tumor_series']} tumor), {entry['repeats']} repeat(s)",
                  "", "| rule | series ROC-AUC [95% CI] | sensitivity at specificity 0.90 [95% CI] | "
                  "ROC-AUC minus mean's [95% CI] |", "|---|---|---|---|"]
        for rule, row in entry["rules"].items():
            delta = row["vs_mean_roc_auc"]
            lines.append(f"| {rule}{' (best)' if rule == entry['best'] else ''} | {_cell(row['roc_auc'])} | "
                         f"{_cell(row['sensitivity_at_specificity_90'])} | "
                         f"{delta['delta']:+.3f} [{delta['ci_low']:+.3f}, {delta['ci_high']:+.3f}] |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("predictions", help="predictions.csv of a kidneyct cv run")
    parser.add_argument("--out", default=None, help="write the JSON here too")
    parser.add_argument("--bootstrap", type=int, default=1000, help="series resamples per interval")
    args = parser.parse_args(argv)
    result = compare_rules(read_out_of_fold(Path(args.predictions)), args.bootstrap)
    print(table(result))
    text = json.dumps({"predictions": str(args.predictions), "evaluations": result}, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return result


if __name__ == "__main__":
    main()
