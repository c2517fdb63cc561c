"""One recipe's cross-validations on different fold assignments, side by side per source, and their mean: the
"5 folds x 2 repeats" numbers of issue 24's targets when the repeats ran as separate `kidneyct cv` runs.

    python benchmarks/cv_repeats.py benchmarks/results/cv-lite0-unet-zoom-synth-midline.json \
        benchmarks/results/cv-lite0-unet-zoom-synth-midline-foldseed1.json --out F.json

Each input is a run's cv.json. They must hold the same training settings (where and how fast they ran aside) on
different fold seeds; a number is averaged over the runs as `kidneyct cv --repeats` averages its repeats. The 95%
intervals stay each run's own: pooling two runs' bootstraps needs both runs' out-of-fold predictions.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import MISSING, fields
from pathlib import Path

from kidneyct.config import RUNTIME_FIELDS, TrainConfig

# (label, source, path into the source's per_source row, scale): what issue 24's targets name.
NUMBERS = (
    ("KiTS23 per slice ROC-AUC", "kits23", ("image", "roc_auc", "value"), 1.0),
    ("KiTS23 sensitivity at specificity 0.90", "kits23", ("image", "sensitivity_at_specificity_90", "value"), 1.0),
    ("KiTS23 tumor Dice median", "kits23", ("tumor_dice",), 1.0),
    ("KiTS23 tumor Dice mean", "kits23", ("tumor_dice_mean",), 1.0),
    ("KiTS23 kidney Dice", "kits23", ("kidney_dice",), 1.0),
    ("Kaggle per series ROC-AUC", "kaggle", ("group", "roc_auc", "value"), 1.0),
    ("Kaggle per slice ROC-AUC", "kaggle", ("image", "roc_auc", "value"), 1.0),
    ("Pancreas-CT normal slices called tumor (%)", "pancreas-ct", ("specificity",), None),
    ("pooled per series ROC-AUC", "pooled", ("group", "roc_auc", "value"), 1.0),
)
# Where and how fast a run went, its folder, its recipe's name (the settings themselves are compared) and the
# training seed (a fold assignment may bring its own).
IGNORED = {*RUNTIME_FIELDS, "out", "data", "seed", "recipe"}
DEFAULTS = json.loads(json.dumps({f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}))


def _read(row: dict, path: tuple[str, ...]) -> float:
    value = row
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return math.nan
        value = value[key]
    return float(value) if value is not None else math.nan


def _settings(cv: dict) -> dict:
    """The run's training settings; one added to kidneyct after the run counts at its default (None in older runs)."""
    stored = cv["config"]["train"]
    return {name: stored[name] if stored.get(name) is not None else DEFAULTS.get(name)
            for name in set(stored) | set(DEFAULTS) if name not in IGNORED}


def repeats_table(runs: list[dict]) -> list[dict]:
    """Per number: each run's value and their mean."""
    table = []
    for label, source, path, scale in NUMBERS:
        values = []
        for cv in runs:
            value = _read(cv["per_source"]["rows"].get(source, {}), path)
            values.append(100 * (1 - value) if scale is None else value)
        finite = [v for v in values if not math.isnan(v)]
        table.append({"number": label, "runs": values, "mean": sum(finite) / len(finite) if finite else math.nan})
    return table


def check_same_recipe(runs: list[dict], names: list[str]) -> None:
    first = _settings(runs[0])
    for cv, name in zip(runs[1:], names[1:]):
        differing = sorted(k for k in set(first) | set(_settings(cv)) if first.get(k) != _settings(cv).get(k))
        if differing:
            raise SystemExit(f"{name} was trained with other settings than {names[0]}: {', '.join(differing)}")
    seeds = [cv["config"]["fold_seed"] for cv in runs]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"the runs share a fold assignment (fold seeds {seeds}): they are not repeats")


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="cv.json files of one recipe on different fold seeds")
    parser.add_argument("--out", type=Path, default=None, help="write the table as JSON here")
    args = parser.parse_args(argv)
    runs = [json.loads(path.read_text()) for path in args.runs]
    check_same_recipe(runs, [str(p) for p in args.runs])
    table = repeats_table(runs)
    seeds = [cv["config"]["fold_seed"] for cv in runs]
    print("| number | " + " | ".join(f"fold seed {s}" for s in seeds) + " | mean |")
    print("|---|" + "---|" * (len(runs) + 1))
    for entry in table:
        print(f"| {entry['number']} | " + " | ".join(f"{v:.3f}" for v in entry["runs"]) + f" | {entry['mean']:.3f} |")
    if args.out:
        args.out.write_text(json.dumps({"command": "python benchmarks/cv_repeats.py " + " ".join(map(str, args.runs)),
                                        "fold_seeds": seeds, "table": table}, indent=2) + "\n")
    return table


if __name__ == "__main__":
    main()
