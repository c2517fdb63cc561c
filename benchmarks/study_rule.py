"""Which study rule separates tumor series from the rest best: candidate rules compared on the out-of-fold
predictions of a grouped cross-validation, and optionally on whole phantom volumes.

    python benchmarks/study_rule.py runs/cv-x/predictions.csv [--out benchmarks/results/study-rule.json]
    python benchmarks/study_rule.py runs/cv-x/predictions.csv --phantom-volumes 40

Each inferred series (the `group` column) is scored by every candidate rule of kidneyct.study.rule over
its slices' out-of-fold tumor probabilities, per repeat. Printed per rule: per-series ROC-AUC and the
sensitivity at specificity 0.90 (mean over repeats, 95% bootstrap interval over series), and the paired
difference in ROC-AUC against the plain mean; rules whose paired interval lies above zero are marked as
beating the mean.

The Kaggle series are exports of slices chosen to show the finding: a tumor series shows its tumor on most
slices. A radiologist's series shows it on a few of many. `--phantom-volumes N` adds that case: a phantom
detector (EfficientNet-Lite0, 600 phantom slices, 8 epochs: minutes on a CPU) reads N pelvis-to-liver phantom
volumes (every other one with a tumor, on the share of its in-scope slices printed) and the rules are compared
on their in-scope slices.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from kidneyct.evaluation.ranking import (Units, bootstrap_interval, paired_comparison, roc_auc,
                                         sensitivity_at_specificity)
from kidneyct.study.rule import StudyRule, study_score
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


def compare(units: dict[str, Units], n_boot: int) -> dict:
    """Every candidate's statistics and paired ROC-AUC difference against the mean, for one score per series
    per repeat (`units` by rule name), and the rule chosen."""
    baseline = units["mean"]
    rows = {rule.name: {"rule": rule.to_dict(),
                        **{name: bootstrap_interval(units[rule.name], stat, n_boot) for name, stat in STATISTICS.items()},
                        "vs_mean_roc_auc": paired_comparison(units[rule.name], baseline, roc_auc, n_boot)}
            for rule in CANDIDATES}
    return {"series": len(baseline.y), "tumor_series": int(baseline.y.sum()), "repeats": int(len(baseline.scores)),
            "rules": rows, "better_than_mean": _better(rows)}


def compare_rules(oof: OutOfFold, n_boot: int) -> dict:
    """{evaluation: compare(...)} over the inferred series of a cross-validation's out-of-fold predictions."""
    return {evaluation.name: compare({rule.name: series_units(oof, evaluation.negatives, rule) for rule in CANDIDATES},
                                     n_boot)
            for evaluation in evaluations(oof.origins)}


def _better(rows: dict) -> list[str]:
    """The rules whose ROC-AUC beats the mean's with a paired 95% interval above zero."""
    return [name for name, row in rows.items() if row["vs_mean_roc_auc"]["ci_low"] > 0]


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
            lines.append(f"| {rule}{' (beats the mean)' if rule in entry['better_than_mean'] else ''} | "
                         f"{_cell(row['roc_auc'])} | "
                         f"{_cell(row['sensitivity_at_specificity_90'])} | "
                         f"{delta['delta']:+.3f} [{delta['ci_low']:+.3f}, {delta['ci_high']:+.3f}] |")
        lines.append("")
    return "\n".join(lines)


def phantom_volume_units(volumes: int, folder: Path) -> tuple[dict[str, Units], float]:
    """Train a phantom detector, read `volumes` pelvis-to-liver phantom volumes with it and score each volume
    by every rule over its in-scope slices. Returns the units by rule name and the tumor volumes' mean share
    of in-scope slices that show the tumor."""
    import kidneyct
    from kidneyct.config import TrainConfig
    from kidneyct.synthetic.phantom import generate_dataset
    from kidneyct.synthetic.phantom_volume import write_volume
    from kidneyct.training.train import train

    generate_dataset(folder / "train", n=600, seed=5, size=96, classes=["Tumor", "Normal"], slices_per_series=(1, 2),
                     progress=False)
    config = TrainConfig(data=str(folder / "train"), out=str(folder / "run"), model="efficientnet-lite0",
                         image_size=96, epochs=8, patience=8, finetune=True, seed=1, device="cpu", progress=False,
                         workers=1, body_crop=False, label_smoothing=0.0, sampler="shuffle")
    detector = kidneyct.load(train(config).best_checkpoint, device="cpu")
    written = [write_volume(folder / "volumes", "nifti", seed=1000 + i, size=96, lesion="Tumor" if i % 2 else None)
               for i in range(volumes)]
    paths = [volume.path for volume in written]
    results = list(detector.run(paths))
    y, by_rule, shares = [], {rule.name: [] for rule in CANDIDATES}, []
    for i, (result, volume) in enumerate(zip(results, written)):
        rows = result.slices
        y.append(i % 2)
        in_scope = {r.index for r in rows if r.in_scope}
        if i % 2 and in_scope:
            shares.append(len(in_scope & set(volume.lesion_slices)) / len(in_scope))
        for rule in CANDIDATES:
            score = study_score([r.probabilities["Tumor"] for r in rows], [bool(r.in_scope) for r in rows], rule)
            by_rule[rule.name].append(0.0 if score.probability is None else score.probability)
    ids = [p.name for p in paths]
    return {name: Units.of(y, [scores], ids) for name, scores in by_rule.items()}, float(np.mean(shares))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("predictions", help="predictions.csv of a kidneyct cv run")
    parser.add_argument("--out", default=None, help="write the JSON here too")
    parser.add_argument("--bootstrap", type=int, default=1000, help="series resamples per interval")
    parser.add_argument("--phantom-volumes", type=int, default=0, help="also compare on this many phantom volumes")
    args = parser.parse_args(argv)
    result = compare_rules(read_out_of_fold(Path(args.predictions)), args.bootstrap)
    if args.phantom_volumes:
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            units, share = phantom_volume_units(args.phantom_volumes, Path(folder))
        result["phantom_volumes"] = {**compare(units, args.bootstrap), "tumor_share_of_in_scope_slices": share}
    print(table(result))
    text = json.dumps({"predictions": str(args.predictions), "evaluations": result}, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return result


if __name__ == "__main__":
    main()
