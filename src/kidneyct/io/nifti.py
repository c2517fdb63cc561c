"""NIfTI volumes through nibabel: reoriented to RAS, axial slices shown in radiological convention.

The header is checked before any voxel is read: three dimensions (or four with one volume), at least one
slice, the decoded size (dims x dtype) within the budget, finite scaling. A .nii.gz is read through a
bounded stream, so no gzip member inflates further than the header's claim, inflated by ISA-L (python-isal's
igzip: the gzip module's interface, about 3 times faster; half the read time of a 300-slice volume was zlib).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kidneyct.errors import ImageReadError
from kidneyct.io.budget import check_decoded_size, check_side, current_budget
from kidneyct.io.files import open_regular
from kidneyct.io.slices import CTSlice
from kidneyct.io.sniff import GZIP_MAGIC
from kidneyct.io.validate import check_rescale, check_slice

if TYPE_CHECKING:
    import nibabel as nib

HEADER_LIMIT = 1024 * 1024  # header and extensions: far above any real one


class _Bounded(io.RawIOBase):
    """A read-only stream that refuses to read past `limit` bytes of its source (a gzip member that
    inflates beyond what the header declares)."""

    def __init__(self, source, path: Path, limit: int):
        self.source, self.path, self.limit = source, path, limit

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.source.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self.source.seek(offset, whence)

    def readinto(self, buffer) -> int:
        size = min(len(buffer), max(0, self.limit - self.source.tell()))
        if size == 0 and len(buffer):
            raise ImageReadError(self.path, f"data run past the {self.limit} bytes its header declares")
        data = self.source.read(size)
        buffer[:len(data)] = data
        return len(data)


@contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    """nibabel logs each header problem it meets before raising; the ImageReadError says it once."""
    disabled, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = disabled


def _open(path: Path) -> tuple[nib.Nifti1Image, _Bounded]:
    import nibabel as nib  # deferred: JPG/PNG runs and `kidneyct --help` never load it

    with open_regular(path) as handle:
        compressed = handle.read(2) == GZIP_MAGIC
    if compressed:
        from isal import igzip  # deferred with nibabel

        source = igzip.open(path, "rb")
    else:
        source = open(path, "rb")
    stream = _Bounded(source, path, HEADER_LIMIT + current_budget())
    try:
        with _quiet(nib.imageglobals.logger):
            image = nib.Nifti1Image.from_stream(io.BufferedReader(stream))
    except ImageReadError:
        source.close()
        raise
    except Exception as error:  # nibabel, gzip and zlib raise many types for damaged files
        source.close()
        raise ImageReadError(path, f"not a readable NIfTI volume ({type(error).__name__}: {error})") from None
    return image, stream


def _check_header(path: Path, image: nib.Nifti1Image, stream: _Bounded) -> None:
    shape = image.shape
    if len(shape) != 3 and not (len(shape) == 4 and shape[3] == 1):
        raise ImageReadError(path, f"expected a 3-D volume, got {len(shape)}-D data of shape {shape}")
    if min(shape[:3]) < 1:
        raise ImageReadError(path, f"volume of shape {shape} holds no voxels")
    check_side(path, *shape[:2])
    dtype = image.get_data_dtype()
    if dtype.kind not in "biuf":
        raise ImageReadError(path, f"voxels of type {dtype} are not grey values (expected integers or floats)")
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    check_decoded_size(path, nbytes, f"a volume of {'x'.join(map(str, shape))} {dtype}")
    check_rescale(path, image.dataobj.slope, image.dataobj.inter)
    stream.limit = int(image.dataobj.offset) + nbytes  # the data may not run past what the header declares


def count_slices(path: str | Path) -> int:
    """Number of axial slices, from the header alone."""
    import nibabel as nib

    path = Path(path)
    image, stream = _open(path)
    with stream.source:
        _check_header(path, image, stream)
        axes = nib.orientations.io_orientation(image.affine)[:, 0]
        return int(image.shape[int(np.flatnonzero(axes == 2)[0]) if 2 in axes else 2])


def to_display(axial_ras: np.ndarray) -> np.ndarray:
    """RAS axial plane [x, y] to an image with anterior up and the patient's right on the left."""
    return np.ascontiguousarray(axial_ras.T[::-1, ::-1])


def from_display(image: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_display`, used when writing volumes."""
    return np.ascontiguousarray(image[::-1, ::-1].T)


def _canonical_stored(path: Path, image: nib.Nifti1Image) -> np.ndarray:
    """The stored (unscaled) voxels reoriented to RAS: one copy in the file's dtype, no float64 volume."""
    import nibabel as nib

    try:
        stored = np.asarray(image.dataobj.get_unscaled())
        stored = stored.reshape(stored.shape[:3])
        return nib.orientations.apply_orientation(stored, nib.orientations.io_orientation(image.affine))
    except ImageReadError:
        raise
    except Exception as error:
        raise ImageReadError(path, f"corrupt NIfTI data ({type(error).__name__}: {error})") from None


def _axial_spacing(image: nib.Nifti1Image) -> float:
    """Millimetres between slices along the canonical (inferior-to-superior) axis."""
    import nibabel as nib

    sizes = nib.affines.voxel_sizes(image.affine)
    axes = nib.orientations.io_orientation(image.affine)[:, 0]
    return float(sizes[list(axes).index(2)])


def _display_spacing(image: nib.Nifti1Image) -> tuple[float, float] | None:
    """Millimetres between the display image's rows (canonical y) and columns (canonical x)."""
    import nibabel as nib

    sizes = nib.affines.voxel_sizes(image.affine)
    axes = list(nib.orientations.io_orientation(image.affine)[:, 0])
    if 0 not in axes or 1 not in axes:
        return None
    rows, columns = float(sizes[axes.index(1)]), float(sizes[axes.index(0)])
    return (rows, columns) if rows > 0 and columns > 0 else None


def read_nifti(path: str | Path, indices: list[int] | None = None) -> list[CTSlice]:
    """Axial slices in Hounsfield units (NIfTI CT stores HU after scl_slope/scl_inter), inferior first.

    Args:
        path: a .nii or .nii.gz file.
        indices: the slices wanted (default all).

    Returns:
        One CTSlice per slice, each checked (finite, large enough).
    """
    path = Path(path)
    image, stream = _open(path)
    with stream.source:
        _check_header(path, image, stream)
        data = _canonical_stored(path, image)
    slope, intercept = check_rescale(path, image.dataobj.slope, image.dataobj.inter)
    depth = data.shape[2]
    spacing = _axial_spacing(image)
    pixel = _display_spacing(image)
    slices = []
    for index in range(depth) if indices is None else indices:
        if not 0 <= index < depth:
            raise ImageReadError(path, f"slice {index} out of range (volume has {depth})")
        hu = data[:, :, index].astype(np.float32) * np.float32(slope) + np.float32(intercept)
        slices.append(check_slice(CTSlice(pixels=to_display(hu), hu=True, source=str(path), index=int(index),
                                          series=str(path), modality="CT", position=index * spacing,
                                          spacing=pixel)))
    return slices


def read_label_slices(path: str | Path, indices: list[int]) -> list[np.ndarray]:
    """Axial slices of a label volume (a segmentation beside a CT volume) as integer arrays in the display
    orientation of `read_nifti`'s slices, pixel for pixel; stored values, no scaling.

    Raises ImageReadError naming the file for a damaged volume, non-integer labels or a slice out of range.
    """
    path = Path(path)
    image, stream = _open(path)
    with stream.source:
        _check_header(path, image, stream)
        data = _canonical_stored(path, image)
    if data.dtype.kind == "f" and not np.array_equal(data, np.round(data)):
        raise ImageReadError(path, "labels are not whole numbers")
    depth = data.shape[2]
    out = []
    for index in indices:
        if not 0 <= index < depth:
            raise ImageReadError(path, f"slice {index} out of range (label volume has {depth})")
        out.append(to_display(data[:, :, index]).astype(np.int64))
    return out
