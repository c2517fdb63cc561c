"""How well the anatomical kidney locator finds kidneys, and where synthetic lesions would go.

    python benchmarks/kidney_locator.py [--out benchmarks/results/kidney-locator.json] [--sheet docs/images/kidney-locator.png]

Measures: on phantoms (true kidney masks) the share of kidneys found, the share of located blobs inside a
true kidney and their Dice; on the real NIfTI in /work/shared/data/real-ct-examples (organ labels) the
slice-level recall and precision of "a kidney is located here"; on the real DICOM series without kidneys the
slices wrongly given one; on the Kaggle slices the share per class with at least one located kidney. Draws a
contact sheet of 48 Kaggle slices (12 per class): located kidneys in green, the synthetic tumor that training
would insert in red.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from kidneyct.io import read_series, read_slices
from kidneyct.io.nifti import to_display
from kidneyct.preprocess import Preprocessing
from kidneyct.preprocess.kidney import locate_kidneys
from kidneyct.preprocess.window import apply_window
from kidneyct.synthetic.lesions import render_lesions
from kidneyct.synthetic.phantom import render_slice, sample_patient

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
KAGGLE = SHARED / "ct-kidney" / "CT-KIDNEY-DATASET-Normal-Cyst-Tumor-Stone"
REAL = SHARED / "real-ct-examples"


def phantoms(n: int = 100, size: int = 128) -> dict:
    rng = np.random.default_rng(0)
    found = inside = kidneys = 0
    dices = []
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for _ in range(n):
        patient = sample_patient(rng, size, None)
        unit = apply_window(render_slice(patient, 0.0)[0], 40, 400)
        truth = [k.r2(xx, yy) <= 1.0 for k in patient.kidneys]
        kidneys += len(truth)
        location = locate_kidneys(unit)
        for kidney in location.kidneys:
            found += 1
            hit = next((t for t in truth if t[int(round(kidney.centroid[0])), int(round(kidney.centroid[1]))]), None)
            if hit is not None:
                inside += 1
                dices.append(2 * (location.mask & hit).sum() / (location.mask[hit].size + hit.sum()))
    return {"slices": n, "kidneys": kidneys, "located": found, "recall": found / kidneys,
            "precision": inside / max(found, 1), "median_dice": float(np.median(dices)) if dices else None}


def real_nifti() -> dict | None:
    path = REAL / "abdomen-ct-30slices.nii.gz"
    if not path.exists():
        return None
    import nibabel as nib

    labels = np.asarray(nib.as_closest_canonical(nib.load(str(path).replace(".nii.gz", ".organs.nii.gz"))).dataobj)
    rows = []
    for ct_slice in read_slices(path):
        kidney = to_display(np.isin(labels[:, :, ct_slice.index], [2, 3]))
        location = locate_kidneys(apply_window(ct_slice.pixels, 40, 400))
        correct = location.found and (location.mask & kidney).sum() > 0.5 * location.mask.sum()
        rows.append((kidney.sum() > 0, location.found, correct))
    present = [r for r in rows if r[0]]
    called = [r for r in rows if r[1]]
    return {"slices": len(rows), "kidney_slices": len(present), "located_slices": len(called),
            "recall": sum(r[2] for r in present) / len(present),
            "precision": sum(r[2] for r in called) / max(len(called), 1),
            "calls_without_kidney": sum(1 for r in rows if r[1] and not r[0])}


def real_dicom() -> dict | None:
    folder = REAL / "upper-abdomen-dicom-no-kidney"
    if not folder.exists():
        return None
    calls = [locate_kidneys(apply_window(s.pixels, 40, 400)).found for s in read_series(folder)]
    return {"slices": len(calls), "slices_given_a_kidney": int(sum(calls))}


def kaggle(per_class: int, sheet: Path | None) -> dict | None:
    if not KAGGLE.exists():
        return None
    prep, rng = Preprocessing(image_size=256), random.Random(0)
    coverage, tiles = {}, []
    for name in ("Normal", "Cyst", "Tumor", "Stone"):
        files = rng.sample(sorted((KAGGLE / name).glob("*.jpg")), per_class)
        units = [prep.to_unit(read_slices(f)[0]) for f in files]
        locations = [locate_kidneys(u) for u in units]
        coverage[name] = float(np.mean([loc.found for loc in locations]))
        tiles += [_tile(u, loc, seed) for seed, (u, loc) in enumerate(zip(units[:12], locations[:12]))]
    if sheet is not None:
        canvas = Image.new("RGB", (12 * 128, 4 * 128))
        for i, tile in enumerate(tiles):
            canvas.paste(tile.resize((128, 128)), ((i % 12) * 128, (i // 12) * 128))
        sheet.parent.mkdir(parents=True, exist_ok=True)
        canvas.save(sheet, optimize=True)
    return {"slices_per_class": per_class, "share_with_a_located_kidney": coverage}


def _tile(unit: np.ndarray, location, seed: int) -> Image.Image:
    rgb = (np.stack([unit] * 3, -1) * 255).astype(np.uint8)
    if location.found:
        images = torch.tensor(unit)[None, None]
        masks = torch.tensor(location.mask)[None]
        inserted = render_lesions(images, masks, torch.tensor([True]), "tumor", torch.Generator().manual_seed(seed))
        rgb = (np.stack([inserted.images[0, 0].numpy()] * 3, -1) * 255).astype(np.uint8)
        _outline(rgb, location.mask, (60, 220, 60))
        _outline(rgb, inserted.masks[0].numpy(), (230, 40, 40))
    tile = Image.fromarray(rgb)
    if location.spine is not None:
        row, col = location.spine
        ImageDraw.Draw(tile).ellipse([col - 2, row - 2, col + 2, row + 2], outline=(80, 160, 255))
    return tile


def _outline(rgb: np.ndarray, mask: np.ndarray, colour) -> None:
    from scipy import ndimage

    rgb[mask & ~ndimage.binary_erosion(mask)] = colour


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/kidney-locator.json")
    parser.add_argument("--sheet", default="docs/images/kidney-locator.png")
    parser.add_argument("--per-class", type=int, default=100, help="Kaggle slices per class for the coverage")
    args = parser.parse_args()
    started = time.perf_counter()
    result = {"phantoms": phantoms(), "real_nifti": real_nifti(), "real_dicom_without_kidneys": real_dicom(),
              "kaggle": kaggle(args.per_class, Path(args.sheet))}
    result["seconds"] = round(time.perf_counter() - started, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
