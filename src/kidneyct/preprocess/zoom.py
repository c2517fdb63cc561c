"""The kidney zoom: the square around each kidney, cut from a slice's body view and resized for a second look.

A segmenting model looks twice: at the whole body view (an overview, where its kidney map finds the kidneys)
and at the square around each kidney it found (the zoom, where lesions are about three times larger: a square
around both kidneys would span most of the body's width and barely magnify). The kidneys are told apart by the
side of the view's midline they lie on: the body view is centred on the body, so the spine is near it. Boxes are
(centre x, centre y, half side) in the view's normalised coordinates ([-1, 1], as torch's `affine_grid`), so a
box found at one resolution cuts the same region at any other. Sampling follows `affine_grid` +
`grid_sample(align_corners=False)` with zero padding exactly, so training (in torch, with augmentation composed
into the same affine) and inference (here, in numpy: no torch needed) cut identical crops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from kidneyct.records import DictRecord


@dataclass(frozen=True)
class Zoom(DictRecord):
    """How the zoom box is drawn around a kidney map (stored with a segmenting model).

    Args:
        margin: added on each side of a kidney's bounding box, as a share of its longer side.
        least: the smallest box side, as a share of the view's side (a sliver of kidney still gets context).
        prior: the box when no kidney is found: in front of the spine, lower middle of the body view.
        threshold: kidney probability above which a pixel counts as kidney.
        least_share: a side's kidney pixels, as a share of the view, below which that side has no kidney (a few
            stray pixels do not make a second zoom).
        midline: half-width of the band around the view's midline, in normalised coordinates (a share of the
            view's half side), inside which a kidney-map component that lies wholly there is no kidney: the
            vertebral body and the aorta, which the kidney map takes for kidney on some slices (no kidney lies
            on the midline; a horseshoe kidney's component reaches out to both sides and stays). 0: off.
        midline_centre: also not kidney: a component whose centre (its pixels' mean column) lies within that band,
            unless at least a quarter of its pixels lie beyond the band on each side (a horseshoe kidney's two
            lateral masses). On the lumbar slices below the kidneys the kidney map takes the vertebral body with a
            strip of psoas beside it for kidney: a component that reaches out of the band on one side only.
    """

    margin: float = 0.25
    least: float = 0.25
    prior: tuple[float, float, float] = (0.0, 0.3, 0.45)
    threshold: float = 0.5
    least_share: float = 0.001
    midline: float = 0.0
    midline_centre: bool = False

    @classmethod
    def from_dict(cls, values: dict) -> "Zoom":
        if "prior" in values:  # JSON gives the tuple back as a list
            values = {**values, "prior": tuple(values["prior"])}
        return super().from_dict(values)

    def box(self, kidney: np.ndarray) -> tuple[float, float, float] | None:
        """The box around a boolean kidney mask [H, W] (any resolution); None when it is empty."""
        rows, cols = np.flatnonzero(kidney.any(1)), np.flatnonzero(kidney.any(0))
        if len(rows) == 0:
            return None
        height, width = kidney.shape
        top, bottom = rows[0] / height, (rows[-1] + 1) / height  # in [0, 1] of the side
        left, right = cols[0] / width, (cols[-1] + 1) / width
        side = max(bottom - top, right - left) * (1 + 2 * self.margin)
        side = max(side, self.least)
        # [0, 1] -> [-1, 1]: the centre doubles less one; half the side doubled is the side.
        return (left + right - 1.0, top + bottom - 1.0, float(side))

    def side_boxes(self, kidney: np.ndarray) -> list[tuple[float, float, float]]:
        """One box per side of the view's midline that holds kidney (at least `least_share` of the view) in a
        boolean mask [H, W]; empty when neither does."""
        middle = kidney.shape[1] // 2
        boxes = []
        for side in (slice(0, middle), slice(middle, None)):
            half = np.zeros_like(kidney)
            half[:, side] = kidney[:, side]
            if half.sum() >= self.least_share * kidney.size:
                boxes.append(self.box(half))
        return boxes

    def boxes_or_prior(self, kidney_probability: np.ndarray) -> tuple[list[tuple[float, float, float]], bool]:
        """The side boxes of a kidney probability map, or [prior] when it shows no kidney; and whether it did."""
        boxes = self.side_boxes(kidney_probability > self.threshold)
        return (boxes, True) if boxes else ([self.prior], False)


    def on_midline(self, kidney: np.ndarray, box=None) -> np.ndarray:
        """The pixels of a boolean kidney mask [H, W] (of the crop `box` of the view; None: the whole view) that
        belong to components lying wholly within the midline band (with `midline_centre`, also those centred in
        it that are not a horseshoe); all False when `midline` is 0."""
        if self.midline <= 0 or not kidney.any():
            return np.zeros_like(kidney, dtype=bool)
        centre_x, _, half = FULL_VIEW if box is None else box
        width = kidney.shape[1]
        x = centre_x + half * ((2 * np.arange(width) + 1) / width - 1)  # each column's place on the view
        labels, count = ndimage.label(kidney)
        index = np.arange(1, count + 1)
        columns = np.broadcast_to(x, kidney.shape)
        size = ndimage.sum(kidney, labels, index)
        left = ndimage.sum(columns <= -self.midline, labels, index)
        right = ndimage.sum(columns >= self.midline, labels, index)
        dropped = (left == 0) & (right == 0)  # wholly within the band
        if self.midline_centre:
            centred = np.abs(ndimage.mean(columns, labels, index)) < self.midline
            horseshoe = (left >= size / 4) & (right >= size / 4)
            dropped |= centred & ~horseshoe
        return np.concatenate([[False], dropped])[labels] & kidney

    def clear_midline(self, maps: np.ndarray, box=None) -> np.ndarray:
        """Kidney and tumor probabilities [2, H, W] (of the crop `box`; None: the whole view) without the
        kidney-map components `on_midline` finds, nor the tumor probability on or next to them (2 px)."""
        dropped = self.on_midline(maps[0] > self.threshold, box)
        if not dropped.any():
            return maps
        cleared = maps.copy()
        cleared[0][dropped] = 0.0
        cleared[1][ndimage.binary_dilation(dropped, iterations=2)] = 0.0
        return cleared


FULL_VIEW = (0.0, 0.0, 1.0)  # the box of the whole view: the overview


def _source_coordinates(box, size: int, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates in an image of `shape` that the output pixels of a `size` crop sample."""
    centre_x, centre_y, half = box
    u = (2 * np.arange(size) + 1) / size - 1  # output pixel centres in [-1, 1]
    x = centre_x + half * u
    y = centre_y + half * u
    columns = ((x + 1) * shape[1] - 1) / 2
    rows = ((y + 1) * shape[0] - 1) / 2
    return rows, columns


def _linear_weights(coordinates: np.ndarray, size: int) -> np.ndarray:
    """[len(coordinates), size]: linear interpolation along one axis of `size` samples at `coordinates`, a
    neighbour outside the axis counting as zero (map_coordinates' order 1 with mode "grid-constant", cval 0)."""
    below = np.floor(coordinates).astype(np.int64)
    above_share = (coordinates - below).astype(np.float32)
    weights = np.zeros((len(coordinates), size), np.float32)
    for index, share in ((below, 1.0 - above_share), (below + 1, above_share)):
        inside = (index >= 0) & (index < size)
        weights[np.flatnonzero(inside), index[inside]] += share[inside]
    return weights


# Bilinear sampling on an axis-aligned grid is separable: rows, then columns, as two small matrix products (what
# map_coordinates computes point by point, 20-50 times slower on the crops and views of a segmenting model).
def cut(image: np.ndarray, box, size: int) -> np.ndarray:
    """The `box` region of a 2-D float image, resampled to size x size (bilinear, zeros outside)."""
    rows, columns = _source_coordinates(box, size, image.shape)
    return (_linear_weights(rows, image.shape[0]) @ image.astype(np.float32, copy=False)
            @ _linear_weights(columns, image.shape[1]).T)


def paste(crop: np.ndarray, box, shape: tuple[int, int]) -> np.ndarray:
    """The inverse of `cut`: maps [C, s, s] of a crop laid back onto an image grid of `shape` (bilinear, zeros
    outside the box)."""
    centre_x, centre_y, half = box
    size = crop.shape[-1]
    x = (2 * np.arange(shape[1]) + 1) / shape[1] - 1
    y = (2 * np.arange(shape[0]) + 1) / shape[0] - 1
    columns = (((x - centre_x) / half + 1) * size - 1) / 2
    rows = (((y - centre_y) / half + 1) * size - 1) / 2
    down, across = _linear_weights(rows, crop.shape[-2]), _linear_weights(columns, size).T
    return np.stack([down @ channel.astype(np.float32, copy=False) @ across for channel in crop])
