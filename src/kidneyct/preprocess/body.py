"""The patient's body in a display slice, and the crop to it that takes table, clothing and background
away (so the field of view and the table no longer tell scanners, and so classes, apart).

The mask is computed at the slice's own resolution: it decides near a threshold on some slices (is the
table's cradle part of the body, is a cushion a bridge to it?), and on a shrunk copy those decisions
changed the crop box by more than 2 px on 5-29% of the 512 px Kaggle originals. The speed comes from
`morphology` instead; benchmarks/body_crop_agreement.py checks the masks against the former definition.
Only slices larger than BODY_SIDE (no CT reconstruction is; a 4096 px upload is) are masked on a shrunk copy:
at full size the morphology's working arrays alone would take hundreds of MiB.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from kidneyct.preprocess.morphology import (disk_closing, disk_dilation, disk_opening, fill_holes,
                                            largest_component)
from kidneyct.preprocess.resize import shrunk

BODY_THRESHOLD = 0.03  # [0, 1] display intensity above which a pixel may be body: in narrow-window
#                        exports fat is as black as air, so only clear air/noise is excluded here
BODY_MIN_AREA = 0.02  # a body smaller than this share of the image is not trusted: the slice stays as it is
BODY_MARGIN = 0.02  # kept around the body's bounding box, as a share of the image side
BODY_CLOSE = 0.025  # closing radius (share of the side): bridges black fat between organs and the skin
BODY_OPEN = 0.02  # opening radius: cuts thin structures (table, its rim, cables) off the body
BODY_SIDE = 1024  # larger slices are masked on a copy shrunk to this side, the mask scaled back


def body_mask(unit: np.ndarray, threshold: float = BODY_THRESHOLD) -> np.ndarray | None:
    """The patient's body in a [0, 1] slice: pixels above `threshold`, closed (so dark fat inside the body
    joins it), holes filled, opened (so the thin table and its rim fall off), then the largest connected
    component, given back the rim the opening shaved off it.

    Args:
        unit: a 2-D slice of display intensities in [0, 1].
        threshold: the intensity above which a pixel may be body.

    Returns:
        A boolean mask of `unit`'s shape, or None when no component reaches BODY_MIN_AREA of the image.
    """
    bright = unit > threshold
    rows, cols = np.flatnonzero(bright.any(1)), np.flatnonzero(bright.any(0))
    if len(rows) == 0:
        return None
    # A closing never reaches past the bounding box of what it closes, and every later step stays inside
    # the closed set: the work is done in that box, which leaves out the air around the patient and table.
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    body = _body_in_box(bright[box], max(unit.shape), unit.size)
    if body is None:
        return None
    mask = np.zeros(unit.shape, bool)
    mask[box] = body
    return mask


def _body_in_box(bright: np.ndarray, side: int, area: int) -> np.ndarray | None:
    """body_mask's morphology on the bright pixels' bounding box; radii and the least area are the slice's."""
    close, open_ = max(1, round(BODY_CLOSE * side)), max(1, round(BODY_OPEN * side))
    closed = fill_holes(disk_closing(bright, close))
    body = largest_component(disk_opening(closed, open_))
    if body is None or body.sum() < BODY_MIN_AREA * area:
        return None
    # Give back the rim the opening shaved off the body (skin), but not the table it cut away.
    return disk_dilation(body, open_) & closed


def crop_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right): the bounding box of `mask` plus BODY_MARGIN of the side, within the slice."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    margin = int(round(BODY_MARGIN * max(mask.shape)))
    return (max(rows[0] - margin, 0), min(rows[-1] + margin + 1, mask.shape[0]),
            max(cols[0] - margin, 0), min(cols[-1] + margin + 1, mask.shape[1]))


def body_crop_geometry(unit: np.ndarray, threshold: float = BODY_THRESHOLD
                       ) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    """Where the body crop cuts: its box (`crop_box`) and the body pixels inside it (the rest is blanked);
    None when no trustworthy body mask is found (the slice stays as it is). Slices over BODY_SIDE are masked
    on a shrunk copy, the mask scaled back to the slice (nearest neighbour)."""
    small = shrunk(unit, BODY_SIDE)
    mask = body_mask(small, threshold)
    if mask is None:
        return None
    if small is not unit:
        scaled = Image.fromarray(mask).resize((unit.shape[1], unit.shape[0]), Image.Resampling.NEAREST)
        mask = np.asarray(scaled, dtype=bool)
    top, bottom, left, right = crop_box(mask)
    return (top, bottom, left, right), mask[top:bottom, left:right]


def crop_to_body(unit: np.ndarray, threshold: float = BODY_THRESHOLD) -> np.ndarray:
    """Blank everything outside the body (table, clothing, annotations, background) and crop to the
    body's bounding box plus a small margin, so the field of view and the table no longer tell scanners
    (and so classes) apart.

    Args:
        unit: a 2-D slice of display intensities in [0, 1].
        threshold: the intensity above which a pixel may be body.

    Returns:
        The blanked crop (`unit`'s dtype), or `unit` itself when no trustworthy body mask is found.
    """
    found = body_crop_geometry(unit, threshold)
    if found is None:
        return unit
    (top, bottom, left, right), keep = found
    return np.where(keep, unit[top:bottom, left:right], 0.0).astype(unit.dtype, copy=False)
