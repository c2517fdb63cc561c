"""Pad to square and resize: the geometry of the cached image (anatomy keeps its proportions).

Two implementations of the one step: Pillow for single slices (`pad_to_square` + `resize_to_uint8`, what the
cache and every checkpoint were made with) and torch for batches on any device (`resize_batch_to_uint8`, the
JPEG fast path). They share the padding and agree to within one grey level (tests/preprocess/test_resize.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # imported where batches are resized: single slices need no torch
    import torch


def square_padding(height: int, width: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right): the black margins that centre an image on a square canvas."""
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    return top, side - height - top, left, side - width - left


def pad_to_square(image: np.ndarray) -> np.ndarray:
    """Pad with black (air) so resizing keeps the anatomy's proportions."""
    if image.shape[0] == image.shape[1]:
        return image
    top, bottom, left, right = square_padding(*image.shape)
    return np.pad(image, ((top, bottom), (left, right)))


def shrunk(unit: np.ndarray, side: int) -> np.ndarray:
    """`unit` (2-D float) box-filtered down to at most `side` pixels on its longer side; itself when smaller."""
    factor = max(unit.shape) / side
    if factor <= 1:
        return unit
    size = (max(1, round(unit.shape[1] / factor)), max(1, round(unit.shape[0] / factor)))
    return np.asarray(Image.fromarray(unit.astype(np.float32, copy=False), mode="F").resize(size, Image.Resampling.BOX))


def resize_to_uint8(unit: np.ndarray, size: int) -> np.ndarray:
    """A square [0, 1] image to size x size uint8 (bilinear, Pillow)."""
    resized = Image.fromarray(unit, mode="F").resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.clip(np.rint(np.asarray(resized) * 255.0), 0, 255).astype(np.uint8)


def resize_batch_to_uint8(unit: torch.Tensor, size: int) -> torch.Tensor:
    """[B, 1, H, W] float in [0, 1] -> pad to square -> resize -> [B, size, size] uint8: the two steps above in
    torch. Pillow's bilinear filter widens with the scale when it shrinks, like torch's antialias=True."""
    import torch
    import torch.nn.functional as F

    height, width = unit.shape[-2:]
    if height != width:
        top, bottom, left, right = square_padding(height, width)
        unit = F.pad(unit, (left, right, top, bottom))
    resized = F.interpolate(unit, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized.mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)[:, 0]
