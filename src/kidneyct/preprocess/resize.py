"""Pad to square and resize: the geometry of the cached image (anatomy keeps its proportions)."""

from __future__ import annotations

import numpy as np
from PIL import Image


def pad_to_square(image: np.ndarray) -> np.ndarray:
    """Pad with black (air) so resizing keeps the anatomy's proportions."""
    height, width = image.shape
    side = max(height, width)
    if height == width:
        return image
    top, left = (side - height) // 2, (side - width) // 2
    out = np.zeros((side, side), dtype=image.dtype)
    out[top:top + height, left:left + width] = image
    return out


def resize_to_uint8(unit: np.ndarray, size: int) -> np.ndarray:
    """A square [0, 1] image to size x size uint8 (bilinear, Pillow)."""
    resized = Image.fromarray(unit, mode="F").resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.clip(np.rint(np.asarray(resized) * 255.0), 0, 255).astype(np.uint8)
