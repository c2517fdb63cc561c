"""Paired recipe comparisons repeated over training seeds: per number, each pair's candidate, baseline and
difference, and the mean difference over the pairs, which is what a written rule judges when one training a side
lies within the seed spread (docs/experiments.md).

    python benchmarks/cv_pairs.py runs/cv-new:runs/cv-base runs/cv-new-seed1:runs/cv-base-seed1 \
        --real runs/cv-new=benchmarks/results/kidney-finder-real-new.json ... --out F.json

Each pair is CANDIDATE:BASELINE, two finished `kidneyct cv` folders on the same folds and training seed (checked).
Either side may instead be a run's committed record, its cv.json as kept in benchmarks/results/ (cv-*.json), with
`--scope RECORD=JSON` naming its benchmarks/cv_scope.py output: a run folder does not outlive its machine, so a
candidate trained in a later session is paired with its baseline's records.

    python benchmarks/cv_pairs.py runs/cv-new:benchmarks/results/cv-base.json \
        --scope benchmarks/results/cv-base.json=benchmarks/results/cv-scope-base.json --real ...
A baseline may be several runs joined by "+" (ENSEMBLE:A+B): its numbers are their mean, what shipping one of them
is worth on average, and the candidate must be the ensemble of exactly those runs (`benchmarks/cv_ensemble.py`,
its members.json; checked).
The numbers are cv_repeats.NUMBERS from each folder's cv.json, the KiTS23 scope shares of benchmarks/cv_scope.py
(NoKidney slices, and Normal, Tumor and Cyst slices together: slices with a kidney) from the folds' kidney shares,
and with `--real RUN=JSON` (benchmarks/kidney_finder_real.py per fold model, merged as {"folds": {K: ...}}) the
no-kidney DICOM's slices taken for kidney over a run's fold models.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cv_repeats  # noqa: E402  (the scripts next to this one)
import cv_scope  # noqa: E402

WITH_KIDNEY = ("Normal", "Tumor", "Cyst")  # KiTS23 classes whose slices show a kidney


def read_cv(run: Path) -> dict:
    """A run's cv.json: in its folder, or the run's committed record (a .json file)."""
    return json.loads((run if run.suffix == ".json" else run / "cv.json").read_text())


def kits_scope(run: Path, scope: Path | None = None) -> dict:
    """KiTS23's scope shares by class: from `scope` (a cv_scope.py output) when given, else from the run
    folder's folds; {} where neither can give them."""
    if scope is not None:
        return json.loads(scope.read_text())["scope"].get("kits23", {})
    if run.suffix == ".json":
        return {}  # a record without its scope file
    try:
        return cv_scope.scope_table(run).get("kits23", {})
    except ValueError:  # folds stored before kidney shares were kept: retest them unchanged first
        return {}


def run_numbers(folder: Path, real: Path | None = None, scope: Path | None = None) -> dict[str, float]:
    """The numbers of one finished cv folder or record (nan where it cannot give one)."""
    numbers = {entry["number"]: entry["runs"][0] for entry in cv_repeats.repeats_table([read_cv(folder)])}
    kits = kits_scope(folder, scope)
    nokidney = kits.get("NoKidney")
    numbers["KiTS23 NoKidney slices in scope (%)"] = 100 * nokidney["in_scope"] if nokidney else math.nan
    shown = [kits[name] for name in WITH_KIDNEY if name in kits]
    slices = sum(row["slices"] for row in shown)
    numbers["KiTS23 slices with a kidney in scope (%)"] = (
        100 * sum(row["slices"] * row["in_scope"] for row in shown) / slices if slices else math.nan)
    if real is not None:
        folds = json.loads(real.read_text())["folds"].values()
        numbers["no-kidney DICOM slices taken for kidney"] = sum(fold["dicom_no_kidney"]["found"] for fold in folds)
        nifti = [fold["nifti"]["kidney_slices_found"] for fold in folds if "nifti" in fold]
        numbers["unenhanced NIfTI kidney slices found (%)"] = 100 * sum(nifti) / len(nifti) if nifti else math.nan
    return numbers


def mean_numbers(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per number, the mean over runs (nan where any run lacks it)."""
    return {number: sum(run.get(number, math.nan) for run in runs) / len(runs) for number in runs[0]}


def check_members(candidate: Path, baselines: list[Path]) -> None:
    """A baseline of several runs is compared only with the ensemble of exactly those runs."""
    listed = candidate / "members.json"
    members = json.loads(listed.read_text())["members"] if listed.exists() else []
    if sorted(Path(m).resolve() for m in members) != sorted(b.resolve() for b in baselines):
        raise SystemExit(f"{candidate} is not the ensemble of {' + '.join(map(str, baselines))} "
                         f"(its members.json lists {members or 'nothing'}): not a pair")


def check_pair(candidate: dict, baseline: dict, names: tuple[str, str], same_seed: bool = True) -> None:
    """Both runs on the same fold assignment and (`same_seed`) training seed, or the pair is not paired."""
    if candidate["config"].get("fold_seed") != baseline["config"].get("fold_seed"):
        raise SystemExit(f"{names[0]} and {names[1]} are on different fold assignments: not a pair")
    if not same_seed:
        return
    seeds = [cv["config"]["train"].get("seed") for cv in (candidate, baseline)]
    if seeds[0] != seeds[1]:
        raise SystemExit(f"{names[0]} and {names[1]} trained with different seeds {seeds}: not a pair")


def pairs_table(pairs: list[tuple[dict[str, float], dict[str, float]]]) -> list[dict]:
    """Per number: each pair's (candidate, baseline, difference) and the mean difference over the pairs."""
    table = []
    for number in pairs[0][0]:
        rows = [(c.get(number, math.nan), b.get(number, math.nan)) for c, b in pairs]
        differences = [c - b for c, b in rows if not (math.isnan(c) or math.isnan(b))]
        table.append({"number": number, "pairs": [{"candidate": c, "baseline": b, "difference": c - b} for c, b in rows],
                      "mean_difference": sum(differences) / len(differences) if differences else math.nan,
                      "mean_candidate": sum(c for c, _ in rows) / len(rows)})
    return table


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pairs", nargs="+",
                        help="CANDIDATE_DIR:BASELINE_DIR[+BASELINE_DIR...], finished cv folders on the same folds")
    parser.add_argument("--real", action="append", default=[], metavar="RUN=JSON",
                        help="a run's kidney_finder_real results over its fold models")
    parser.add_argument("--scope", action="append", default=[], metavar="RECORD=JSON",
                        help="a run's benchmarks/cv_scope.py output (needed for a record; optional for a folder)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    real = {Path(run): Path(path) for run, path in (item.split("=", 1) for item in args.real)}
    scopes = {Path(run): Path(path) for run, path in (item.split("=", 1) for item in args.scope)}
    measured = []
    for pair in args.pairs:
        candidate_part, baseline_part = pair.split(":", 1)
        candidate, baselines = Path(candidate_part), [Path(part) for part in baseline_part.split("+")]
        cvs = [read_cv(p) for p in (candidate, *baselines)]
        if len(baselines) == 1:
            check_pair(*cvs, (str(candidate), str(baselines[0])))
        else:  # an ensemble and its members: other seeds by design, the same folds
            check_members(candidate, baselines)
            for cv, baseline in zip(cvs[1:], baselines):
                check_pair(cvs[0], cv, (str(candidate), str(baseline)), same_seed=False)
        measured.append((run_numbers(candidate, real.get(candidate), scopes.get(candidate)),
                         mean_numbers([run_numbers(p, real.get(p), scopes.get(p)) for p in baselines])))
    table = pairs_table(measured)
    print("| number | " + " | ".join(f"pair {i + 1}: candidate / baseline (difference)" for i in range(len(measured)))
          + " | mean difference |")
    print("|---|" + "---|" * (len(measured) + 1))
    for entry in table:
        cells = [f"{p['candidate']:.3f} / {p['baseline']:.3f} ({p['difference']:+.3f})" for p in entry["pairs"]]
        print(f"| {entry['number']} | " + " | ".join(cells) + f" | {entry['mean_difference']:+.3f} |")
    if args.out:
        command = "python benchmarks/cv_pairs.py " + " ".join(args.pairs) + "".join(f" --real {r}" for r in args.real) \
            + "".join(f" --scope {s}" for s in args.scope)
        args.out.write_text(json.dumps({"command": command, "pairs": args.pairs, "table": table}, indent=2) + "\n")
    return table


if __name__ == "__main__":
    main()
