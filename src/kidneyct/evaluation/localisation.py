"""Does Grad-CAM point at the lesion? Two measures, both on the model's input grid.

- Phantoms (ground-truth lesion masks): the pointing game. For tumor slices the model calls tumor,
  the share whose heatmap peak falls inside the lesion mask, or within `tolerance` pixels of it.
- Real data (no masks): the share of heatmap mass inside the body, i.e. not on the table or the
  air around the patient, and the share of heatmap peaks inside the body.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from scipy import ndimage

from kidneyct.data.decode import decode_samples
from kidneyct.data.splits import read_split_csv
from kidneyct.io import CTSlice, read_raster
from kidneyct.labels import decide, positive_index
from kidneyct.preprocess import Preprocessing, disk_opening, largest_component
from kidneyct.synthetic.phantom import MANIFEST

DEFAULT_TOLERANCE = 3  # pixels on the model's input grid: a heatmap peak a few pixels off still points at the lesion
BODY_LEVEL = 5 / 255  # darker than fat in any abdominal display window, brighter than JPG air


def to_model_grid(mask: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """A mask in image pixels to the model's input grid, through the same pad and resize as the image."""
    unit = prep.to_uint8(CTSlice(mask.astype(np.float32), hu=False, source="<mask>"))
    return unit >= 128


def peak(heatmap: np.ndarray) -> tuple[int, int] | None:
    """(row, column) of the heatmap maximum; None for an all-zero map (Grad-CAM found no support)."""
    if not np.any(heatmap > 0):
        return None
    return tuple(int(i) for i in np.unravel_index(np.argmax(heatmap), heatmap.shape))


def pointing_hits(heatmaps: np.ndarray, masks: np.ndarray, tolerance: float = 0) -> np.ndarray:
    """Per map: is its peak inside the mask, or within `tolerance` pixels (Euclidean) of it?"""
    hits = np.zeros(len(heatmaps), bool)
    for i, (heatmap, mask) in enumerate(zip(heatmaps, masks)):
        top = peak(heatmap)
        if top is None or not mask.any():
            continue
        distance = ndimage.distance_transform_edt(~mask)  # 0 inside, distance to the mask outside
        hits[i] = distance[top] <= tolerance
    return hits


def grid_body_mask(image: np.ndarray) -> np.ndarray:
    """The patient's body in a uint8 image on the model's input grid, where heatmaps are scored: everything
    above air, holes filled first, minus thin structures (the table, its cradle, lines) removed by an
    opening, largest connected part, holes (bowel gas) filled. Unlike `preprocess.body_mask` (tuned for the
    crop, at the source resolution, before resizing), it never gives up on a slice: no body, no pixels."""
    # Filling first keeps fat that a narrow window shows as black inside the skin line.
    body = ndimage.binary_fill_holes(image.astype(np.float32) / 255.0 > BODY_LEVEL)
    body = largest_component(disk_opening(body, max(1, round(image.shape[0] * 0.02))))
    return np.zeros(image.shape, bool) if body is None else ndimage.binary_fill_holes(body)


def mass_inside(heatmaps: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Per map: the share of its total mass inside the region (NaN for an all-zero map)."""
    totals = heatmaps.reshape(len(heatmaps), -1).sum(1)
    inside = (heatmaps * regions).reshape(len(heatmaps), -1).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, inside / totals, np.nan)


def _summary(values: np.ndarray) -> float | None:
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else None


def _phantom_masks(root: Path) -> dict[str, Path]:
    with open(root / MANIFEST, newline="") as handle:
        return {str((root / row["path"]).resolve()): root / row["mask"] for row in csv.DictReader(handle)
                if row["mask"]}


def phantom_pointing(predictor, explainer, root: str | Path, split_csv: str | Path, split: str = "test",
                     tolerance: float = DEFAULT_TOLERANCE, workers: int | None = 1) -> dict:
    """Pointing game on the tumor slices of a phantom split (PNG phantoms with `.mask.png` masks): of
    the tumor slices the model calls tumor, the share whose heatmap peak is inside the lesion mask,
    or within `tolerance` pixels. Shares are None when the model calls no tumor slice tumor."""
    root = Path(root).resolve()
    classes = predictor.classes
    pos = positive_index(classes)
    if pos is None:
        raise ValueError(f"the pointing game looks for tumors; classes are {classes}")
    masks_by_path = _phantom_masks(root)
    samples = [s for s in read_split_csv(split_csv, root, classes)[split]
               if s.label == pos and str(Path(s.path).resolve()) in masks_by_path]
    if not samples:
        raise ValueError(f"no tumor slices with lesion masks in the {split} split under {root}")
    prep = predictor.preprocessing
    decoded = decode_samples(samples, prep, workers=workers, progress=False)
    probs = predictor.probabilities_of(decoded.images)
    correct = decide(probs, classes, predictor.threshold) == pos
    report = {"split": split, "tumor_slices": len(decoded.samples), "correctly_classified": int(correct.sum()),
              "sensitivity": float(correct.mean()), "tolerance_px": tolerance, "grid_px": prep.image_size,
              "peak_inside_mask": None, "peak_within_tolerance": None, "mass_inside_body": None}
    if not correct.any():  # nothing to point at
        return report
    images = decoded.images[correct]
    kept = [s for s, keep in zip(decoded.samples, correct) if keep]
    masks = np.stack([to_model_grid(read_raster(masks_by_path[str(Path(s.path).resolve())]).pixels > 0.5, prep)
                      for s in kept])
    heatmaps = explainer.heatmaps(images, np.full(len(images), pos))
    bodies = np.stack([grid_body_mask(image) for image in images])
    inside, near = pointing_hits(heatmaps, masks, 0), pointing_hits(heatmaps, masks, tolerance)
    report.update(peak_inside_mask=float(inside.mean()), peak_within_tolerance=float(near.mean()),
                  mass_inside_body=_summary(mass_inside(heatmaps, bodies)))
    return report


def body_pointing(predictor, explainer, images: np.ndarray) -> dict:
    """For slices without lesion masks (real data): heatmap mass and peaks inside the body, for the
    class the model predicts."""
    probs = predictor.probabilities_of(images)
    decisions = decide(probs, predictor.classes, predictor.threshold)
    heatmaps = explainer.heatmaps(images, decisions)
    bodies = np.stack([grid_body_mask(image) for image in images])
    peaks = [peak(h) for h in heatmaps]
    peak_inside = [bodies[i][p] for i, p in enumerate(peaks) if p is not None]
    shares = mass_inside(heatmaps, bodies)
    return {
        "slices": len(images), "mass_inside_body": _summary(shares),
        "mass_inside_body_median": float(np.nanmedian(shares)) if np.isfinite(shares).any() else None,
        "peak_inside_body": float(np.mean(peak_inside)) if peak_inside else None,
        "body_area_share": float(bodies.mean()),
    }
