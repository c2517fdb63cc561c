"""How well the scope gate marks the slices that show a kidney.

    python benchmarks/scope_gate.py [--volumes 20] [--out benchmarks/results/scope-gate.json]

Measures, with the gate's default settings (no model needed: series are judged by the kidney locator):
on pelvis-to-liver phantom volumes (half with a tumor) the per-slice agreement of "in scope" with "shows a
kidney" and the share of tumor slices in scope; on the real labelled NIfTI in ../shared/data/real-ct-examples
the precision and recall of "in scope" against the organ labels' kidney slices; on the real DICOM series
without kidneys the number of slices in scope.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from kidneyct.inference.scope import ScopeGate
from kidneyct.io import CTSlice, expand_inputs, read_item
from kidneyct.preprocess import Preprocessing
from kidneyct.synthetic.phantom_volume import render_volume

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-ct-examples"
GATE = ScopeGate(Preprocessing())  # the abdomen window every recipe uses


def _scopes(slices: list[CTSlice]) -> list[bool]:
    return [s.in_scope for s in GATE.series(slices, [GATE.look(s) for s in slices])]


def phantoms(volumes: int, size: int = 128) -> dict:
    agreements, tumor_in_scope, tumor_slices = [], 0, 0
    for seed in range(volumes):
        slices, truth, heights = render_volume(seed, size, "Tumor" if seed % 2 else None)
        cts = [CTSlice(hu, True, "phantom", index=i, position=float(h)) for i, ((hu, _), h) in enumerate(zip(slices, heights))]
        scope = _scopes(cts)
        agreements.append(float(np.mean([a == b for a, b in zip(scope, truth)])))
        lesion = [i for i, (_, mask) in enumerate(slices) if mask.any()]
        tumor_slices += len(lesion)
        tumor_in_scope += sum(scope[i] for i in lesion)
    return {"volumes": volumes, "slices_per_volume": len(heights), "agreement_mean": float(np.mean(agreements)),
            "agreement_median": float(np.median(agreements)), "agreement_min": float(np.min(agreements)),
            "volumes_at_least_0.95": int(np.sum(np.array(agreements) >= 0.95)),
            "agreement_per_volume": [round(a, 3) for a in agreements],
            "tumor_slices_in_scope": tumor_in_scope / max(tumor_slices, 1)}


def real() -> dict | None:
    nifti = REAL / "abdomen-ct-30slices.nii.gz"
    if not nifti.exists():
        return None
    import nibabel as nib

    labels = np.asarray(nib.as_closest_canonical(nib.load(str(REAL / "abdomen-ct-30slices.organs.nii.gz"))).dataobj)
    kidney = np.isin(labels, [2, 3]).any((0, 1))
    items, _ = expand_inputs([nifti, REAL / "upper-abdomen-dicom-no-kidney"])
    (volume, _), (series, _) = (read_item(item) for item in items)
    scope = np.array(_scopes(volume))
    hit = int((scope & kidney).sum())
    return {"nifti": {"slices": len(scope), "kidney_slices": int(kidney.sum()), "in_scope": int(scope.sum()),
                      "precision": hit / max(int(scope.sum()), 1), "recall": hit / int(kidney.sum()),
                      "in_scope_flags": "".join("1" if s else "0" for s in scope)},
            "dicom_without_kidneys": {"slices": len(series), "in_scope": int(sum(_scopes(series)))}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=20)
    parser.add_argument("--out", default="benchmarks/results/scope-gate.json")
    args = parser.parse_args()
    started = time.perf_counter()
    result = {"settings": GATE.settings.to_dict(), "phantom_volumes": phantoms(args.volumes), "real": real(),
              "seconds": None}
    result["seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(result, indent=2)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()
