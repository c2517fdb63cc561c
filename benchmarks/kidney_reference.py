"""Where the kidneys are in an axial slice, from anatomy alone (the real data carry no kidney labels).

A kidney, cut axially, is a compact soft-tissue blob beside the spine, at the level of the vertebral
body, ringed by perirenal fat and set off from the lateral body wall. The locator finds the spine (the
largest bright component near the posterior midline), then, at several intensity thresholds (the
brightest blobs in a contrast-enhanced scan, the muscle-level ones in a plain scan), scores every blob
on each side by position, size, shape and isolation, and keeps the best blob per side when its score
clears a bar. It favours precision over recall: a slice whose kidneys it cannot tell apart from liver,
spleen or bowel is reported without kidneys, so synthetic lesions never land in another organ.

Works on [0, 1] display images of any size (the 256 px Kaggle slices, a HU slice through a window, or
the cached body-cropped model input); coronal and sagittal slices (body taller than wide) get no kidneys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from kidneyct.preprocess.body import body_mask

# Anatomical priors, as shares of the body's bounding box (measured on the labelled real NIfTI scan
# and the Kaggle slices): kidney centroids sit 0.14-0.28 of the body width beside the vertebral body and
# within +-0.1 of the body height of its centre; a mid-kidney cut covers 1-3% of the body's area.
PRIOR_DX, PRIOR_DX_SD = 0.19, 0.08
PRIOR_DY, PRIOR_DY_SD = -0.01, 0.08
PRIOR_AREA, AREA_LOG_SD = 0.015, 1.0
MIN_AREA, MAX_AREA = 0.002, 0.06
MIN_DX = 0.10  # closer to the midline lie the psoas muscles (centroids at 0.06-0.09), not kidneys
MIN_SCORE = 0.1  # below this a blob is not called a kidney (liver/spleen/bowel blobs scored 0-0.09)
LOCATOR_VERSION = 1  # bump when the locator changes what it finds: memoised masks are keyed by it
THRESHOLDS = 10  # intensity levels tried between the fat/soft-tissue split and near-white
BONE_LEVEL = 0.85  # [0, 1] display intensity from which a pixel may be bone


@dataclass(frozen=True)
class FoundKidney:
    side: int  # -1: image left (the patient's right in radiological display), +1: image right
    score: float  # 0-1, product of the position, size, shape and isolation terms
    centroid: tuple[float, float]  # (row, column) in pixels
    area: float  # share of the body's area


@dataclass
class KidneyLocation:
    """The located kidneys of one slice: a pixel mask and one entry per found kidney."""

    mask: np.ndarray  # bool [H, W]
    kidneys: list[FoundKidney] = field(default_factory=list)
    spine: tuple[float, float] | None = None  # (row, column) of the vertebral body, when found
    axial: bool = True  # False: the body is taller than wide (a coronal or sagittal cut)
    body_size: tuple[int, int] | None = None  # (height, width) of the body's bounding box in pixels

    @property
    def found(self) -> bool:
        return bool(self.kidneys)

    @property
    def score(self) -> float:
        return max((k.score for k in self.kidneys), default=0.0)


def _otsu(values: np.ndarray, bins: int = 64) -> float:
    """The threshold that best splits `values` (in [0, 1]) into two classes (fat vs soft tissue)."""
    hist, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    centres = (edges[:-1] + edges[1:]) / 2
    below = np.cumsum(hist)
    above = below[-1] - below
    mass = np.cumsum(hist * centres)
    mean_below = mass / np.maximum(below, 1)
    mean_above = (mass[-1] - mass) / np.maximum(above, 1)
    return float(centres[int(np.argmax(below * above * (mean_below - mean_above) ** 2))])


@dataclass(frozen=True)
class _Body:
    mask: np.ndarray
    top: int
    left: int
    height: int
    width: int

    @classmethod
    def of(cls, mask: np.ndarray) -> "_Body":
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        return cls(mask, int(rows[0]), int(cols[0]), int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1))


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


def _blob_score(frac: float, dx: float, dy: float, box, area: float) -> float:
    height, width = box[0].stop - box[0].start, box[1].stop - box[1].start
    fill = area / (height * width)
    aspect = max(height, width) / max(1, min(height, width))
    position = np.exp(-((dx - PRIOR_DX) / PRIOR_DX_SD) ** 2 - ((dy - PRIOR_DY) / PRIOR_DY_SD) ** 2)
    size = np.exp(-(np.log(frac / PRIOR_AREA) / AREA_LOG_SD) ** 2)
    shape = np.clip((fill - 0.3) / 0.4, 0, 1) * np.exp(-max(aspect - 2.2, 0))
    return float(position * size * shape)


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


REGION_GROW = 0.06  # of the body width: room around a located kidney for an exophytic mass
PRIOR_SEMI_AXES = (0.13, 0.11)  # (rows as a share of body height, columns of body width) of a prior region


def kidney_region(location: KidneyLocation, grow: float = REGION_GROW) -> np.ndarray:
    """Where the kidneys and a kidney mass can be: each located kidney grown by `grow` of the body
    width, and for a side without a located kidney an ellipse at the prior position beside the spine.

    Returns:
        bool [H, W]; all False when the slice has no spine (nothing anatomical to go by).
    """
    region = np.zeros(location.mask.shape, bool)
    if location.spine is None or location.body_size is None:
        return region
    height, width = location.body_size
    if location.mask.any():
        grown = ndimage.distance_transform_edt(~location.mask) <= max(1.0, grow * width)
        region |= grown
    rows, cols = np.mgrid[0:region.shape[0], 0:region.shape[1]].astype(np.float32)
    spine_row, spine_col = location.spine
    located = {kidney.side for kidney in location.kidneys}
    for side in (-1, 1):
        if side in located:
            continue
        centre_row = spine_row + PRIOR_DY * height
        centre_col = spine_col + side * PRIOR_DX * width
        region |= (((rows - centre_row) / (PRIOR_SEMI_AXES[0] * height)) ** 2
                   + ((cols - centre_col) / (PRIOR_SEMI_AXES[1] * width)) ** 2) <= 1.0
    return region


def _locate_uint8(image: np.ndarray) -> tuple[np.ndarray, float]:
    location = locate_kidneys(image.astype(np.float32) / 255.0)
    return location.mask, location.score


def locate_batch(images: np.ndarray, workers: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Kidney masks (bool [N, S, S]) and scores (float [N]) for uint8 images [N, S, S], such as the
    decode cache's rows; `workers` > 1 spreads the slices over processes."""
    masks = np.zeros(images.shape, bool)
    scores = np.zeros(len(images), np.float32)
    if workers > 1 and len(images) > 64:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            results = pool.map(_locate_uint8, images, chunksize=64)
            for i, (mask, score) in enumerate(results):
                masks[i], scores[i] = mask, score
    else:
        for i, image in enumerate(images):
            masks[i], scores[i] = _locate_uint8(image)
    return masks, scores
