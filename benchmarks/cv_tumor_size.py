"""Which tumors a cross-validated recipe finds, by size: KiTS23 Tumor slices in thirds of their annotated tumor
area, each third ranked against all KiTS23 Normal slices (out-of-fold ROC-AUC with a patient-resampled 95%
interval), and with a second run, the paired difference on the same folds. Also by how much kidney the slice shows
beside its tumor: "mostly tumor" slices (annotated kidney less than half the tumor: a mass at a pole below or above
the kidney, or a kidney the tumor has replaced) against the rest, where the tumor sits in a kidney the model can
find first.

    python benchmarks/cv_tumor_size.py runs/cv-seg-synth-midline
    python benchmarks/cv_tumor_size.py runs/cv-new --compare runs/cv-seg-synth-midline --out F.json

The tumor and kidney areas are the manifest's `tumor_px` and `kidney_px` (pixels of labels 2 and 1 on the 462 px
slice), read from the `manifest.csv` beside each slice's class folder. A recipe that only helps large tumors
shows here before it shows in the pooled number; the shipped recipe's small tumors are where the issue's targets
are lost.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from kidneyct.evaluation.ranking import Units, bootstrap_interval, paired_comparison, roc_auc

SOURCE = "kits23"
THIRDS = ("small", "middle", "large")
KIDNEY_SHARES = ("mostly tumor", "mostly kidney")  # the slice's kidney below / at least half its tumor


def tumor_areas(paths: list[str], column: str = "tumor_px") -> dict[str, float]:
    """{slice file name: tumor pixels} (or another `column` of pixels) from the manifests beside the slices' class
    folders."""
    areas = {}
    for manifest in sorted({Path(path).parents[1] / "manifest.csv" for path in paths}):
        with open(manifest, newline="") as handle:
            areas.update({Path(row["file"]).name: float(row[column]) for row in csv.DictReader(handle)})
    return areas


def kits_scores(cv_folder: Path) -> list[dict]:
    """The first repeat's out-of-fold KiTS23 Tumor and Normal rows, in the file's order."""
    with open(cv_folder / "predictions.csv", newline="") as handle:
        return [row for row in csv.DictReader(handle)
                if row["repeat"] == "0" and row["source"] == SOURCE and row["origin"] in ("Tumor", "Normal")]


def strata(rows: list[dict], areas: dict[str, float]) -> dict[str, np.ndarray]:
    """{third: indices of its tumors and of every normal} by the tumor area's tertiles."""
    tumor = np.array([row["origin"] == "Tumor" for row in rows])
    area = np.array([areas[Path(row["path"]).name] if is_tumor else np.nan for row, is_tumor in zip(rows, tumor)])
    cuts = np.quantile(area[tumor], [1 / 3, 2 / 3])
    third = np.digitize(area, cuts, right=True)
    normals = np.flatnonzero(~tumor)
    return {name: np.concatenate([np.flatnonzero(tumor & (third == k)), normals]) for k, name in enumerate(THIRDS)}


def kidney_strata(rows: list[dict], areas: dict[str, float], kidney: dict[str, float]) -> dict[str, np.ndarray]:
    """{KIDNEY_SHARES name: indices of its tumors and of every normal}: tumors whose slice shows less kidney than half
    the tumor, and the rest."""
    tumor = np.array([row["origin"] == "Tumor" for row in rows])
    names = [Path(row["path"]).name for row in rows]
    mostly_tumor = np.array([is_tumor and kidney[name] < areas[name] / 2 for name, is_tumor in zip(names, tumor)])
    normals = np.flatnonzero(~tumor)
    return {KIDNEY_SHARES[0]: np.concatenate([np.flatnonzero(mostly_tumor), normals]),
            KIDNEY_SHARES[1]: np.concatenate([np.flatnonzero(tumor & ~mostly_tumor), normals])}


def units(rows: list[dict], index: np.ndarray) -> Units:
    chosen = [rows[i] for i in index]
    return Units.of([row["origin"] == "Tumor" for row in chosen], [float(row["p_Tumor"]) for row in chosen],
                    [row["group"] for row in chosen])


def size_table(cv_folder: Path, compare: Path | None = None, n_boot: int = 1000) -> dict:
    rows = kits_scores(cv_folder)
    baseline_rows = kits_scores(compare) if compare else None
    if baseline_rows is not None and [r["path"] for r in baseline_rows] != [r["path"] for r in rows]:
        raise ValueError(f"{cv_folder} and {compare} did not test the same KiTS23 slices in the same folds")
    areas = tumor_areas([row["path"] for row in rows])
    kidney = tumor_areas([row["path"] for row in rows], "kidney_px")
    table = {}
    for name, index in {**strata(rows, areas), **kidney_strata(rows, areas, kidney)}.items():
        tumors = [areas[Path(rows[i]["path"]).name] for i in index if rows[i]["origin"] == "Tumor"]
        entry = {"tumors": len(tumors), "normals": int(len(index) - len(tumors)),
                 "tumor_px": [min(tumors), max(tumors)], "roc_auc": bootstrap_interval(units(rows, index), roc_auc,
                                                                                      n_boot)}
        if baseline_rows is not None:
            entry["paired"] = paired_comparison(units(rows, index), units(baseline_rows, index), roc_auc, n_boot)
        table[name] = entry
    return table


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cv_folder", type=Path)
    parser.add_argument("--compare", type=Path, default=None, help="a finished cv folder on the same folds")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=None, help="write the table as JSON here")
    args = parser.parse_args(argv)
    command = f"python benchmarks/cv_tumor_size.py {args.cv_folder}" + (f" --compare {args.compare}" if args.compare
                                                                          else "")
    result = {"command": command, "table": size_table(args.cv_folder, args.compare, args.bootstrap)}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    for name, entry in result["table"].items():
        auc = entry["roc_auc"]
        low, high = entry["tumor_px"]
        line = (f"{name:13s} {entry['tumors']:3d} tumors of {low:.0f}-{high:.0f} px "
                f"vs {entry['normals']} normals: ROC-AUC {auc['value']:.3f} [{auc['ci_low']:.3f}, {auc['ci_high']:.3f}]")
        if "paired" in entry:
            paired = entry["paired"]
            line += (f"; vs {args.compare}: {paired['delta']:+.3f} [{paired['ci_low']:+.3f}, {paired['ci_high']:+.3f}]"
                     f" (ahead in {paired['p_better']:.0%})")
        print(line)
    return result


if __name__ == "__main__":
    main()
