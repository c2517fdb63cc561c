"""Speed of the kidney locator on the scope gate's views, and that it finds exactly what it found before.

    python benchmarks/kidney_locator_speed.py [--every 10] [--out benchmarks/results/kidney-locator-speed.json]

Runs the frozen former locator (benchmarks/kidney_reference.py, a copy of kidneyct/preprocess/kidney.py
before the speed-up) and the current one on the same inputs: the views ScopeGate.look builds (the default
abdomen window, 160 px) of every `--every`-th Kaggle slice in ../shared/data/ct-kidney, all of
ct-kidney-512-sample, the slices of the real NIfTI scan and of the real DICOM series without kidneys.
Compares everything locate_kidneys returns (the mask exactly; scores, centroids, areas, spine, body size
and flags to 1e-9) and times both, single-threaded, each slice once per implementation.

Measured (2 CPU cores shared with a training job, OMP_NUM_THREADS=1; benchmarks/results/kidney-locator-speed.json):
811 slices compared (561 Kaggle, 200 Kaggle 512 px originals, 30 NIfTI, 20 DICOM; 511 with a located
kidney), 0 differing; 29.25 ms per slice before, 7.01 ms after (4.2x). Per set: Kaggle 29.7 -> 7.1 ms,
512 px originals 28.9 -> 7.0 ms, NIfTI 23.5 -> 5.6 ms, DICOM 30.2 -> 7.5 ms. Both times include the body
mask (kidneyct.preprocess.body, unchanged), now about a quarter of the locator's time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from kidneyct.inference.scope import ScopeGate
from kidneyct.io import read_slices
from kidneyct.preprocess import Preprocessing
from kidneyct.preprocess.kidney import locate_kidneys

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kidney_reference  # noqa: E402  (the frozen former locator, next to this script)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TOLERANCE = 1e-9


def views(every: int) -> dict[str, list[np.ndarray]]:
    """The gate's [0, 1] views of each input set, as ScopeGate.look makes them."""
    gate = ScopeGate(Preprocessing())
    sources = {
        "kaggle_every_%d" % every: sorted((SHARED / "ct-kidney").rglob("*.jpg"))[::every],
        "kaggle_512_sample": sorted((SHARED / "ct-kidney-512-sample").rglob("*.jpg")),
        "real_nifti": sorted(p for p in (SHARED / "real-ct-examples").glob("*.nii.gz") if ".organs." not in p.name),
        "real_dicom": [SHARED / "real-ct-examples" / "upper-abdomen-dicom-no-kidney"],
    }
    out = {}
    for name, paths in sources.items():
        out[name] = [gate.view.to_uint8(s).astype(np.float32) / 255.0
                     for path in paths if path.exists() for s in read_slices(path)]
    return out


def differences(old, new) -> list[str]:
    """What differs between two KidneyLocations (empty when they agree)."""
    diff = []
    if old.mask.shape != new.mask.shape or not np.array_equal(old.mask, new.mask):
        diff.append("mask")
    for name in ("axial", "found", "body_size"):
        if getattr(old, name) != getattr(new, name):
            diff.append(name)
    if (old.spine is None) != (new.spine is None) or (
            old.spine is not None and not np.allclose(old.spine, new.spine, rtol=0, atol=TOLERANCE)):
        diff.append("spine")
    if abs(old.score - new.score) > TOLERANCE:
        diff.append("score")
    if len(old.kidneys) != len(new.kidneys):
        return diff + ["kidneys"]
    for a, b in zip(old.kidneys, new.kidneys):
        numbers_a = (a.score, a.area, *a.centroid)
        numbers_b = (b.score, b.area, *b.centroid)
        if a.side != b.side or not np.allclose(numbers_a, numbers_b, rtol=0, atol=TOLERANCE):
            diff.append("kidney")
    return diff


def compare(units: list[np.ndarray]) -> dict:
    """Both locators on `units`: the differing slices and each one's mean time per slice."""
    old_s = new_s = 0.0
    differing, found = [], 0
    for i, unit in enumerate(units):
        start = time.perf_counter()
        old = kidney_reference.locate_kidneys(unit)
        middle = time.perf_counter()
        new = locate_kidneys(unit)
        old_s, new_s = old_s + middle - start, new_s + time.perf_counter() - middle
        found += old.found
        diff = differences(old, new)
        if diff:
            differing.append({"slice": i, "what": diff})
    n = max(len(units), 1)
    return {"slices": len(units), "with_kidney": found, "differing": len(differing), "differences": differing[:20],
            "old_ms_per_slice": 1000 * old_s / n, "new_ms_per_slice": 1000 * new_s / n}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=10, help="take every n-th Kaggle slice")
    parser.add_argument("--out", type=Path, help="write the JSON here too")
    args = parser.parse_args(argv)
    sets = {name: compare(units) for name, units in views(args.every).items()}
    slices = sum(s["slices"] for s in sets.values())
    old_ms = sum(s["old_ms_per_slice"] * s["slices"] for s in sets.values()) / slices
    new_ms = sum(s["new_ms_per_slice"] * s["slices"] for s in sets.values()) / slices
    result = {"view_size": ScopeGate(Preprocessing()).settings.view_size, "slices": slices,
              "differing": sum(s["differing"] for s in sets.values()), "old_ms_per_slice": round(old_ms, 2),
              "new_ms_per_slice": round(new_ms, 2), "speedup": round(old_ms / new_ms, 2), "sets": sets}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
