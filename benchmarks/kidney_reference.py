"""The kidney locator as it was before issue 17 made it faster: the three functions that changed, frozen, for
benchmarks/kidney_locator_speed.py and tests/preprocess/test_kidney.py to compare the current one against.
Everything the change left alone (priors, result types, Otsu, the body summary, the blob score) is imported
from kidneyct.preprocess.kidney, so only what differs is kept here.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from kidneyct.preprocess.body import body_mask
from kidneyct.preprocess.kidney import (BONE_LEVEL, MAX_AREA, MIN_AREA, MIN_DX, MIN_SCORE, THRESHOLDS, FoundKidney,
                                        KidneyLocation, _blob_score, _Body, _otsu)


def find_spine(unit: np.ndarray, body: _Body) -> tuple[float, float, np.ndarray] | None:
    """(row, column) of the vertebral body and the spine's bone mask: the largest bright component
    near the midline in the posterior half of the body; None when there is none."""
    inside = unit[body.mask]
    bone = (unit >= max(BONE_LEVEL, float(np.quantile(inside, 0.995)) * 0.92)) & body.mask
    labels, count = ndimage.label(bone)
    if count == 0:
        return None
    index = np.arange(1, count + 1)
    areas = ndimage.sum(bone, labels, index)
    centres = ndimage.center_of_mass(bone, labels, index)
    midline = body.left + body.width / 2
    best, best_score = None, 0.0
    for label, area, (row, col) in zip(index, areas, centres):
        off_midline = abs(col - midline) / body.width
        depth = (row - body.top) / body.height
        if area < 0.0005 * inside.size or off_midline > 0.15 or depth < 0.45:
            continue
        score = area * np.exp(-(off_midline / 0.06) ** 2)
        if score > best_score:
            best, best_score = label, score
    if best is None:
        return None
    spine = labels == best
    rows, cols = np.nonzero(spine)
    # The vertebral body is the anterior part of the bone complex (the arch and processes lie behind).
    front = rows <= rows.min() + max(3, (rows.max() - rows.min() + 1) * 0.55)
    return float(rows[front].mean()), float(cols[front].mean()), spine


def _isolation(unit: np.ndarray, blob: np.ndarray, box, depth_map: np.ndarray, near_bone: np.ndarray, pad: int,
               width: int) -> float:
    """How kidney-like a blob's surroundings are: ringed by clearly darker tissue (perirenal fat), away
    from the lateral body wall (which liver and spleen reach) and not against the spine (the psoas is)."""
    y0, x0 = max(box[0].start - pad, 0), max(box[1].start - pad, 0)
    y1, x1 = min(box[0].stop + pad, unit.shape[0]), min(box[1].stop + pad, unit.shape[1])
    local = np.zeros((y1 - y0, x1 - x0), bool)
    local[box[0].start - y0:box[0].stop - y0, box[1].start - x0:box[1].stop - x0] = blob
    ring = ndimage.binary_dilation(local, iterations=pad) & ~local
    window = unit[y0:y1, x0:x1]
    ring_values = window[ring]
    if ring_values.size == 0:
        return 0.0
    dark = float(np.mean(ring_values < window[local].mean() - 0.12))
    wall = float(depth_map[y0:y1, x0:x1][local].min()) / width
    against_spine = float(np.mean(near_bone[y0:y1, x0:x1][ring]))
    return float(np.clip((dark - 0.25) / 0.4, 0, 1) * np.clip(wall / 0.04, 0, 1)
                 * np.clip(1.0 - against_spine / 0.1, 0, 1))


def locate_kidneys(unit: np.ndarray, min_score: float = MIN_SCORE) -> KidneyLocation:
    """Kidneys in one [0, 1] display slice (anterior up). Returns an empty location (no kidneys) for
    slices without a body, without a spine, or cut other than axially."""
    unit = np.asarray(unit, dtype=np.float32)
    empty = np.zeros(unit.shape, bool)
    mask = body_mask(unit)
    if mask is None:
        return KidneyLocation(empty, axial=False)
    body = _Body.of(mask)
    if body.height > body.width * 1.05:
        return KidneyLocation(empty, axial=False)
    spine = find_spine(unit, body)
    if spine is None:
        return KidneyLocation(empty)
    spine_row, spine_col, bone = spine
    side_px = max(unit.shape)
    soft_level = _otsu(unit[body.mask & (unit < BONE_LEVEL)])
    near_bone = ndimage.binary_dilation(bone, iterations=max(1, round(0.012 * side_px)))
    depth_map = ndimage.distance_transform_edt(body.mask)
    body_area = float(body.mask.sum())
    opening = max(1, round(0.006 * side_px))
    pad = max(2, round(0.02 * side_px))
    cross = ndimage.generate_binary_structure(2, 1)
    best: dict[int, tuple[float, np.ndarray | None, FoundKidney | None]] = {-1: (0.0, None, None), 1: (0.0, None, None)}
    for level in np.linspace(soft_level, 0.95, THRESHOLDS):
        tissue = ndimage.binary_opening((unit > level) & body.mask & ~near_bone, cross, iterations=opening)
        labels, count = ndimage.label(tissue)
        if count == 0:
            continue
        index = np.arange(1, count + 1)
        areas = ndimage.sum(tissue, labels, index)
        centres = ndimage.center_of_mass(tissue, labels, index)
        boxes = ndimage.find_objects(labels)
        for label, area, (row, col), box in zip(index, areas, centres, boxes):
            frac = area / body_area
            side = 1 if col > spine_col else -1
            dx, dy = side * (col - spine_col) / body.width, (row - spine_row) / body.height
            if not MIN_AREA <= frac <= MAX_AREA or dx < MIN_DX:
                continue
            score = _blob_score(frac, dx, dy, box, area)
            if score <= best[side][0] or score < min_score:  # isolation is the costly term: only if it can win
                continue
            # A ring of enhancing cortex around darker medulla is one kidney: fill what it encloses.
            blob = ndimage.binary_fill_holes(labels[box] == label)
            score *= _isolation(unit, blob, box, depth_map, near_bone, pad, body.width)
            if score > best[side][0]:
                full = np.zeros(unit.shape, bool)
                full[box] = blob
                best[side] = (score, full, FoundKidney(side, score, (float(row), float(col)), float(frac)))
    kidneys = [found for score, _, found in best.values() if found is not None and score >= min_score]
    for score, blob, _ in best.values():
        if blob is not None and score >= min_score:
            empty |= blob
    return KidneyLocation(empty, kidneys, (spine_row, spine_col), body_size=(body.height, body.width))
