"""Where each pixel of the cached form comes from: the crop (body or kidney crop, with the pixels it blanks),
the padding to a square and the resize. `slice_geometry` computes it once from the image; `Geometry.image`
(bilinear) and `Geometry.mask` (nearest neighbour) apply the same steps, so a mask stays aligned with its
image through every crop, pad and resize."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from kidneyct.preprocess.body import body_crop_geometry
from kidneyct.preprocess.kidney_crop import kidney_box
from kidneyct.preprocess.resize import pad_to_square, resize_to_uint8, square_padding

Box = tuple[int, int, int, int]  # (top, bottom, left, right)


@dataclass(frozen=True)
class Geometry:
    """The crop `box` of a slice, the pixels of it that are kept (`keep`, bool over the box; the others are
    blanked; None: all kept), and the side `size` of the square cached form."""

    box: Box
    keep: np.ndarray | None
    size: int

    def crop(self, unit: np.ndarray) -> np.ndarray:
        """The cropped, blanked image (`unit`'s dtype), before padding and resizing."""
        top, bottom, left, right = self.box
        cropped = unit[top:bottom, left:right]
        return cropped if self.keep is None else np.where(self.keep, cropped, 0.0).astype(unit.dtype, copy=False)

    def image(self, unit: np.ndarray) -> np.ndarray:
        """A [0, 1] slice to the cached uint8 form: crop, pad to square, bilinear resize."""
        return resize_to_uint8(pad_to_square(self.crop(unit)), self.size)

    def mask(self, labels: np.ndarray) -> np.ndarray:
        """A label map of the slice's grid (uint8) to the cached form's grid: the same crop (blanked pixels
        become background, as they become black in the image), padding with background, nearest resize."""
        top, bottom, left, right = self.box
        cropped = labels[top:bottom, left:right]
        if self.keep is not None:
            cropped = np.where(self.keep, cropped, 0).astype(np.uint8)
        return resize_labels(pad_to_square(cropped), self.size)


def to_slice_grid(maps: np.ndarray, box: Box, shape: tuple[int, int], keep: np.ndarray | None = None) -> np.ndarray:
    """Maps [C, S, S] on a cached form's grid laid back on its slice's grid [C, H, W] (float32, bilinear): the
    resize, padding and crop of `Geometry.image` undone, zero outside the crop `box` and, inside it, where
    `keep` (bool over the box) is false: pixels the crop blanked."""
    top, bottom, left, right = box
    height, width = bottom - top, right - left
    side = max(height, width)
    pad_top, _, pad_left, _ = square_padding(height, width)
    out = np.zeros((len(maps), *shape), np.float32)
    for channel, values in enumerate(maps):
        resized = Image.fromarray(np.ascontiguousarray(values, np.float32), mode="F").resize(
            (side, side), Image.Resampling.BILINEAR)
        out[channel, top:bottom, left:right] = np.asarray(resized)[pad_top:pad_top + height, pad_left:pad_left + width]
    if keep is not None:
        out[:, top:bottom, left:right] *= keep
    return out


def resize_labels(labels: np.ndarray, size: int) -> np.ndarray:
    """A square uint8 label map to size x size, nearest neighbour (Pillow, the image resize's pixel grid)."""
    if labels.shape == (size, size):
        return np.ascontiguousarray(labels, np.uint8)
    image = Image.fromarray(np.ascontiguousarray(labels, np.uint8))
    return np.asarray(image.resize((size, size), Image.Resampling.NEAREST))


def slice_geometry(unit: np.ndarray, size: int, body_crop: bool = False, kidney_crop: bool = False) -> Geometry:
    """The geometry of one [0, 1] slice's cached form: the whole slice, the body crop (blanking outside the
    body; the whole slice when no body is found), or the kidney crop (the square around both kidney regions
    of the body crop; the body crop where no spine is found)."""
    height, width = unit.shape
    geometry = Geometry((0, height, 0, width), None, size)
    if not (body_crop or kidney_crop):
        return geometry
    found = body_crop_geometry(unit)
    if found is not None:
        geometry = Geometry(found[0], found[1], size)
    if not kidney_crop:
        return geometry
    inner = kidney_box(geometry.crop(unit))
    if inner is None:
        return geometry
    top, bottom, left, right = inner
    outer_top, _, outer_left, _ = geometry.box
    keep = None if geometry.keep is None else geometry.keep[top:bottom, left:right]
    return Geometry((outer_top + top, outer_top + bottom, outer_left + left, outer_left + right), keep, size)


def crop_to_kidneys(unit: np.ndarray) -> np.ndarray:
    """The body crop (table and background blanked) cut down to the square around both kidney regions.

    Args:
        unit: a 2-D axial slice of display intensities in [0, 1], anterior up.

    Returns:
        The crop (`unit`'s dtype); the body crop alone when the slice has no spine or is not axial.
    """
    return slice_geometry(unit, max(unit.shape), kidney_crop=True).crop(unit)
