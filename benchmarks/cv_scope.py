"""Where a segmenting model's kidney finder puts slices, out of fold: the share of each source's slices (by true
class) that the scope gate would pass, from the label maps a `kidneyct cv` run kept beside each fold.

    python benchmarks/cv_scope.py runs/cv-seg            # -> benchmarks/results/cv-scope.json
    python benchmarks/cv_scope.py runs/cv-seg --sweep 0.001 0.002 0.005 0.01   # also the gate's trade-off
    python benchmarks/cv_scope.py runs/cv-seg --list NoKidney   # also which slices without a kidney it lets in

A slice is in scope when the fold model's overview calls at least its `segmentation.min_kidney_fraction` of the
body view kidney: what `predict` applies. Each fold keeps that share of its test slices (`kidney_fraction` in
fold-result.json, written by `kidneyct cv` and `benchmarks/cv_retest.py` since 2026-12-07). A fold stored before then
is refused: retest it unchanged (`python benchmarks/cv_retest.py RUN RUN-gate`) to record it. (Until then this
script counted the kept label maps' kidney and tumor pixels, whose zooms, drawn on the prior box when no kidney is
found, add kidney the gate never sees: it over-counted slices without a kidney in scope.) Issue 24's targets:
KiTS23 NoKidney slices in scope <= 2%; slices with a kidney in scope (the real NIfTI's: >= 95%).
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from kidneyct.checkpoint import read_checkpoint
from kidneyct.experiments.cv import fold_dir
from kidneyct.experiments.fold_store import FOLD_RESULT

RESULTS = Path(__file__).resolve().parent / "results" / "cv-scope.json"


def fold_kidney_share(folder: Path) -> tuple[np.ndarray, float]:
    """Each test slice's overview kidney share of the body view (fold's test order), and the fold model's gate."""
    record = json.loads((folder / FOLD_RESULT).read_text())
    if record.get("kidney_fraction") is None:
        raise ValueError(f"{folder}: this fold kept no kidney shares (stored before they were kept, or not a "
                         f"segmenting model); retest its run unchanged to record them: "
                         f"python benchmarks/cv_retest.py RUN RUN-gate")
    threshold = read_checkpoint(folder / record["checkpoint"]).outputs.segmentation.min_kidney_fraction
    return np.asarray(record["kidney_fraction"], dtype=np.float64), threshold


def fold_scope(folder: Path, threshold: float | None = None) -> np.ndarray:
    """Whether each test slice of the fold in `folder` is in scope (at the fold model's own gate, or at
    `threshold`), in the fold's test order."""
    share, own = fold_kidney_share(folder)
    return share >= (own if threshold is None else threshold)


def first_repeat_folds(cv_folder: Path):
    """Per fold of the first repeat: (fold, its test rows of predictions.csv in test order, their kidney shares,
    the fold model's gate)."""
    with open(cv_folder / "predictions.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["repeat"] == "0"]
    by_fold = defaultdict(list)
    for row in rows:  # predictions.csv lists each fold's slices in its test order
        by_fold[int(row["fold"])].append(row)
    for fold, fold_rows in sorted(by_fold.items()):
        shares, gate = fold_kidney_share(fold_dir(cv_folder, 0, fold))
        if len(shares) != len(fold_rows):
            raise ValueError(f"fold {fold}: {len(shares)} kidney shares for {len(fold_rows)} test slices")
        yield fold, fold_rows, shares, gate


def scope_table(cv_folder: Path, threshold: float | None = None) -> dict:
    """{source: {true class (origin): {"slices": n, "in_scope": share}}} over the first repeat's folds, at each
    fold model's own gate or at `threshold` (a share of the body view)."""
    counts = defaultdict(lambda: [0, 0])
    for _, fold_rows, shares, gate in first_repeat_folds(cv_folder):
        for row, share in zip(fold_rows, shares):
            key = (row["source"] or "all", row["origin"] or row["label"])
            counts[key][0] += 1
            counts[key][1] += int(share >= (gate if threshold is None else threshold))
    table = defaultdict(dict)
    for (source, origin), (n, inside) in sorted(counts.items()):
        table[source][origin] = {"slices": n, "in_scope": round(inside / n, 3)}
    return dict(table)


def slices_in_scope(cv_folder: Path, origin: str) -> list[dict]:
    """The first repeat's test slices of true class `origin` (e.g. NoKidney) that their fold model's gate lets in:
    path, fold, kidney share, the gate, and p(Tumor) as `kidneyct cv` predicted it (a slice's own audit)."""
    listed = []
    for fold, fold_rows, shares, gate in first_repeat_folds(cv_folder):
        for row, share in zip(fold_rows, shares):
            if (row["origin"] or row["label"]) == origin and share >= gate:
                tumor_column = next(name for name in row if name.lower() == "p_tumor")
                listed.append({"path": row["path"], "source": row["source"], "fold": fold,
                               "kidney_share": round(float(share), 4), "gate": gate,
                               "p_tumor": round(float(row[tumor_column]), 3)})
    return listed


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cv_folder", type=Path)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--sweep", type=float, nargs="+", default=[], metavar="SHARE",
                        help="also the in-scope shares at these gates (kidney share of the body view): the trade-off "
                             "between slices without and with a kidney, out of fold (a description, not a choice: "
                             "a gate picked here would be tuned on the test folds)")
    parser.add_argument("--list", metavar="CLASS", dest="list_origin",
                        help="also name the slices of this true class (e.g. NoKidney) that the gate lets in, with "
                             "their kidney share and p(Tumor)")
    args = parser.parse_args(argv)
    sweep = " --sweep " + " ".join(f"{g:g}" for g in args.sweep) if args.sweep else ""
    listing = f" --list {args.list_origin}" if args.list_origin else ""
    result = {"command": f"python benchmarks/cv_scope.py {args.cv_folder}{sweep}{listing}", "cv": str(args.cv_folder),
              "scope": scope_table(args.cv_folder)}
    if args.sweep:
        result["sweep"] = {f"{gate:g}": scope_table(args.cv_folder, gate) for gate in args.sweep}
    if args.list_origin:
        result["in_scope_slices"] = {args.list_origin: slices_in_scope(args.cv_folder, args.list_origin)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for source, origins in result["scope"].items():
        for origin, entry in origins.items():
            print(f"{source:12s} {origin:10s} {entry['slices']:5d} slices, in scope {entry['in_scope']:.3f}")
    for gate, table in result.get("sweep", {}).items():
        shares = ", ".join(f"{source} {origin} {entry['in_scope']:.3f}" for source, origins in table.items()
                           for origin, entry in origins.items() if source != "kaggle")
        print(f"gate {gate}: {shares}")
    for origin, listed in result.get("in_scope_slices", {}).items():
        for entry in listed:
            print(f"in scope, {origin}: {entry['path']} (fold {entry['fold']}, kidney share {entry['kidney_share']:.4f} "
                  f">= {entry['gate']:g}, p(Tumor) {entry['p_tumor']:.2f})")
    return result


if __name__ == "__main__":
    main()
