"""Crop a slice to where its kidneys are, so that the model sees the kidneys at a higher resolution and little
of what tells scanners apart (the body's outline and size, the table, the field of view).

The crop is the square around both sides' kidney regions (`kidney_region`: each located kidney grown for an
exophytic mass, and the prior ellipse beside the spine for a side without one), so that it is framed alike
whether or not the locator found a kidney: which slices get a kidney found must not become a cue of its own.
A slice without a spine (no anatomy to frame by) keeps the body crop.
"""

from __future__ import annotations

import numpy as np
from kidneyct.preprocess.kidney import kidney_region, locate_kidneys
from kidneyct.preprocess.resize import shrunk

KIDNEY_CROP_MARGIN = 0.04  # of the body width, around both kidney regions
# The locator runs on at most this side: its time and memory grow with the pixel count (a 4096 px upload would
# take seconds and hundreds of MiB), while kidneys stay tens of pixels wide at 512 px.
LOCATE_SIDE = 512


def square_box(region: np.ndarray, margin: int) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right): the smallest square holding `region`'s bounding box plus `margin`, moved
    inside the image (clipped where the image is smaller than the square); None for an empty region."""
    rows, cols = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
    if not len(rows):
        return None
    top, bottom = rows[0] - margin, rows[-1] + margin + 1
    left, right = cols[0] - margin, cols[-1] + margin + 1
    side = max(bottom - top, right - left)
    spans = []
    for start, stop, size in ((top, bottom, region.shape[0]), (left, right, region.shape[1])):
        start = min(max(0, (start + stop - side) // 2), max(0, size - side))
        spans += [start, min(start + side, size)]
    return spans[0], spans[1], spans[2], spans[3]


def kidney_box(body: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of the square around both kidney regions of a body-cropped slice (see
    `crop_to_body`), or None when it has no spine or is not axial. Slices larger than LOCATE_SIDE are located
    on a shrunk copy and the box scaled back."""
    small = shrunk(body, LOCATE_SIDE)
    location = locate_kidneys(small)
    if location.body_size is None:
        return None
    margin = int(round(KIDNEY_CROP_MARGIN * location.body_size[1]))
    box = square_box(kidney_region(location), margin)
    if box is None or small is body:
        return box
    fy, fx = body.shape[0] / small.shape[0], body.shape[1] / small.shape[1]
    top, bottom, left, right = box
    return (int(top * fy), min(body.shape[0], int(np.ceil(bottom * fy))),
            int(left * fx), min(body.shape[1], int(np.ceil(right * fx))))

