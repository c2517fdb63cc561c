"""Masks: label maps beside the images, the training signal of segmenting models (docs/sources.md).

Convention: `<source root>/masks/<image stem>.png` (or `<stem>.nii.gz` for a volume, slice for slice), on the
image's own pixel grid, one integer per pixel: 0 background, 1 kidney, 2 tumor, 3 cyst. A missing mask means
"unknown", never "empty": decoded masks hold UNKNOWN (255) there, and a loss must ignore those pixels. The same
value marks single unknown pixels (a synthetic lesion drawn into a slice without a mask is known only where
it lies).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kidneyct.errors import ImageReadError
from kidneyct.io import file_format, read_label_png, read_label_slices
from kidneyct.labels import MASK_BACKGROUND as BACKGROUND
from kidneyct.labels import MASK_CYST as CYST
from kidneyct.labels import MASK_KIDNEY as KIDNEY
from kidneyct.labels import MASK_TUMOR as TUMOR
from kidneyct.labels import MASK_UNKNOWN as UNKNOWN

LABELS = {BACKGROUND: "background", KIDNEY: "kidney", TUMOR: "tumor", CYST: "cyst"}


def read_mask(path: str | Path, slice_index: int | None, shape: tuple[int, int]) -> np.ndarray:
    """The label map of one slice (uint8, `shape`), checked: same grid as its image, values 0-3.

    Args:
        path: the mask file (PNG, or NIfTI for a volume).
        slice_index: the slice of a volume (None for a single-slice image).
        shape: the image slice's (height, width) as read.

    Raises:
        ImageReadError naming the mask file and the problem (unreadable, wrong shape, values outside 0-3).
    """
    path = Path(path)
    if file_format(path) == "nifti":
        labels = read_label_slices(path, [slice_index or 0])[0]
    else:
        labels = read_label_png(path)
    if labels.shape != tuple(shape):
        raise ImageReadError(path, f"mask is {labels.shape[1]}x{labels.shape[0]} px, its image "
                                   f"{shape[1]}x{shape[0]} px: a mask lies on its image's pixel grid")
    outside = np.unique(labels[(labels < BACKGROUND) | (labels > CYST)])
    if len(outside):
        shown = ", ".join(str(v) for v in outside[:5]) + (", ..." if len(outside) > 5 else "")
        raise ImageReadError(path, f"values {shown} outside 0-3 (0 background, 1 kidney, 2 tumor, 3 cyst)")
    return labels.astype(np.uint8)


def unknown_masks(shape: tuple[int, ...]) -> np.ndarray:
    """A read-only all-UNKNOWN mask array of `shape` that takes no memory (a broadcast scalar)."""
    return np.broadcast_to(np.uint8(UNKNOWN), shape)
