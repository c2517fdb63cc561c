"""One entry point for every supported file: a path becomes its CTSlice objects."""

from __future__ import annotations

from pathlib import Path

from kidneyct.errors import ImageReadError
from kidneyct.io.dicom import read_dicom, read_series
from kidneyct.io.nifti import read_nifti
from kidneyct.io.raster import read_raster
from kidneyct.io.slices import CTSlice
from kidneyct.io.sniff import file_kind


def read_slices(path: str | Path, indices: list[int] | None = None) -> list[CTSlice]:
    """All slices of a file (or the chosen ones of a volume). Raises ImageReadError naming the file."""
    path = Path(path)
    if path.is_dir():
        slices = read_series(path)
        return slices if indices is None else [slices[i] for i in indices]
    if not path.exists():
        raise ImageReadError(path, "file not found")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "file is empty (0 bytes)")
    kind = file_kind(path)
    if kind == "nifti":
        return read_nifti(path, indices)
    if kind == "dicom":
        return [read_dicom(path)]
    if kind == "raster":
        return [read_raster(path)]
    # No telling suffix: DICOM files often have none. Try DICOM, then any image Pillow knows.
    try:
        return [read_dicom(path)]
    except ImageReadError as dicom_error:
        if "not a DICOM file" not in dicom_error.reason:
            raise
    return [read_raster(path)]
