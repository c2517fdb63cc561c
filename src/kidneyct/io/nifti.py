"""NIfTI volumes through nibabel: reoriented to RAS, axial slices shown in radiological convention."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kidneyct.errors import ImageReadError
from kidneyct.io.raster import MAX_SIDE
from kidneyct.io.slices import CTSlice

if TYPE_CHECKING:
    import nibabel as nib


def _load(path: Path) -> nib.Nifti1Image:
    import nibabel as nib  # deferred: JPG/PNG runs and `kidneyct --help` never load it

    try:
        image = nib.load(str(path))
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise ImageReadError(path, f"not a readable NIfTI volume ({error})") from None
    shape = image.shape
    if len(shape) == 4 and shape[3] == 1:
        image = image.slicer[..., 0]
    elif len(shape) != 3:
        raise ImageReadError(path, f"expected a 3-D volume, got {len(shape)}-D data of shape {shape}")
    if max(image.shape[:2]) > MAX_SIDE:
        raise ImageReadError(path, f"slices of {image.shape[:2]} exceed the {MAX_SIDE}-pixel limit")
    return nib.as_closest_canonical(image)


def count_slices(path: str | Path) -> int:
    """Number of axial slices, from the header alone."""
    return int(_load(Path(path)).shape[2])


def to_display(axial_ras: np.ndarray) -> np.ndarray:
    """RAS axial plane [x, y] to an image with anterior up and the patient's right on the left."""
    return np.ascontiguousarray(axial_ras.T[::-1, ::-1])


def from_display(image: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_display`, used when writing volumes."""
    return np.ascontiguousarray(image[::-1, ::-1].T)


def read_nifti(path: str | Path, indices: list[int] | None = None) -> list[CTSlice]:
    """Axial slices in Hounsfield units (NIfTI CT stores HU after scl_slope/scl_inter), inferior first."""
    path = Path(path)
    image = _load(path)
    depth = image.shape[2]
    wanted = range(depth) if indices is None else indices
    try:
        data = np.asarray(image.dataobj, dtype=np.float32)
    except (OSError, EOFError, zlib.error, ValueError) as error:
        raise ImageReadError(path, f"corrupt NIfTI data ({error})") from None
    spacing = float(image.header.get_zooms()[2])  # along the canonical (inferior-to-superior) axis
    slices = []
    for index in wanted:
        if not 0 <= index < depth:
            raise ImageReadError(path, f"slice {index} out of range (volume has {depth})")
        slices.append(CTSlice(pixels=to_display(data[:, :, index]), hu=True, source=str(path),
                              index=int(index), series=str(path), modality="CT", position=index * spacing))
    return slices
