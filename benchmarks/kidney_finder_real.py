"""A segmenting model's kidney finder on the two real scans in ../shared/data/real-ct-examples (another hospital,
Hounsfield units), slice by slice against their organ labels (TotalSegmentator: 2 right kidney, 3 left kidney).

    python benchmarks/kidney_finder_real.py                        # the shipped model
    python benchmarks/kidney_finder_real.py --checkpoint runs/x/best.pt
    python benchmarks/kidney_finder_real.py --cv runs/cv-x --out F.json  # each fold model of a cv run's first repeat

Per slice: whether the model's overview finds a kidney (its kidney map covers at least the checkpoint's
min_kidney_fraction of the body view), whether the scope gate puts it in scope (those slices and, in a series or
volume, the span between the first and last of them grown by its margin; before the no-contrast rule that keeps the
unenhanced NIfTI from any call) and whether the labels show one. Issue 24's target: the NIfTI's kidney slices
in scope >= 95%; the no-kidney DICOM series: none in scope. Writes benchmarks/results/kidney-finder-real.json.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from kidneyct.experiments.cv import fold_dir
from kidneyct.inference.predictor import Predictor
from kidneyct.inference.run import prepare_input
from kidneyct.io.inputs import InputItem

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("KIDNEYCT_DATA", ROOT.parent / "shared" / "data")) / "real-ct-examples"
RESULTS = ROOT / "benchmarks" / "results" / "kidney-finder-real.json"
KIDNEY_LABELS = (2, 3)


def labelled_kidney(labels_file: Path, n_slices: int) -> np.ndarray:
    """Whether each axial slice of an organ-label volume shows a kidney."""
    import nibabel as nib

    labels = np.asarray(nib.load(str(labels_file)).dataobj)
    shown = np.isin(labels, KIDNEY_LABELS).any(axis=(0, 1))
    if len(shown) != n_slices:
        raise ValueError(f"{labels_file}: {len(shown)} label slices for {n_slices} image slices")
    return shown


def found_kidney(predictor: Predictor, item: InputItem) -> tuple[np.ndarray, np.ndarray]:
    """Whether the model's overview finds a kidney on each slice, and whether the scope gate puts it in scope, in
    reading order."""
    prepared = prepare_input(predictor, item)
    if prepared.images is None:
        raise ValueError(f"{item.path}: {prepared.skipped}")
    output = predictor.backend.looked(prepared.images, with_maps=False)
    scopes = predictor.judge.scopes(prepared.slices, item.is_study, None, kidney_fraction=output.kidney_fraction)
    found = output.kidney_fraction >= predictor.checkpoint.outputs.segmentation.min_kidney_fraction
    return found, np.array([scope.in_scope for scope in scopes])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", default=None, help="default: the shipped model")
    source.add_argument("--cv", type=Path, default=None,
                        help="a finished `kidneyct cv` folder: every fold model of its first repeat, as "
                             '{"folds": {K: ...}} (what benchmarks/cv_pairs.py --real reads)')
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.cv is not None:
        result = {"command": f"python benchmarks/kidney_finder_real.py --cv {args.cv}",
                  "folds": {str(fold): measure(str(checkpoint)) for fold, checkpoint in fold_models(args.cv)}}
    else:
        result = measure(args.checkpoint)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def fold_models(cv_folder: Path) -> list[tuple[int, Path]]:
    """(fold, best.pt) of each fold of the first repeat of a cv folder, in fold order."""
    models, fold = [], 0
    while (fold_dir(cv_folder, 0, fold) / "best.pt").exists():
        models.append((fold, fold_dir(cv_folder, 0, fold) / "best.pt"))
        fold += 1
    if not models:
        raise SystemExit(f"{cv_folder}: no fold model (fold folders with best.pt) found")
    return models


def measure(checkpoint: str | None) -> dict:
    """One model's kidney finder and scope gate on the two real scans."""
    predictor = Predictor.open(checkpoint, "cpu")
    if not predictor.backend.segmenting:
        raise SystemExit(f"{predictor.backend.source}: not a segmenting model (it has no kidney map)")
    volume = DATA / "abdomen-ct-30slices.nii.gz"
    found, in_scope = found_kidney(predictor, InputItem(volume, "volume"))
    truth = labelled_kidney(DATA / "abdomen-ct-30slices.organs.nii.gz", len(found))
    series, series_in_scope = found_kidney(predictor, InputItem(DATA / "upper-abdomen-dicom-no-kidney", "series"))
    result = {
        "command": "python benchmarks/kidney_finder_real.py" + (f" --checkpoint {checkpoint}" if checkpoint else ""),
        "checkpoint": str(predictor.backend.source.name),
        "nifti": {"slices": len(found), "kidney_slices": int(truth.sum()),
                  "kidney_slices_found": round(float(found[truth].mean()), 3),
                  "other_slices": int((~truth).sum()),
                  "other_slices_found": round(float(found[~truth].mean()), 3) if (~truth).any() else None,
                  "kidney_slices_in_scope": round(float(in_scope[truth].mean()), 3),
                  "other_slices_in_scope": round(float(in_scope[~truth].mean()), 3) if (~truth).any() else None,
                  "found_per_slice": found.astype(int).tolist(), "in_scope_per_slice": in_scope.astype(int).tolist(),
                  "labelled_per_slice": truth.astype(int).tolist()},
        "dicom_no_kidney": {"slices": len(series), "found": int(series.sum()),
                            "in_scope": int(series_in_scope.sum())},
    }
    print(json.dumps({k: v for k, v in result["nifti"].items() if "per_slice" not in k}), result["dicom_no_kidney"])
    return result


if __name__ == "__main__":
    main()
