"""Readers: every supported file becomes CTSlice objects (pixels plus whether they are Hounsfield units)."""

from __future__ import annotations

from pathlib import Path

from kidneyct.io.dicom import list_series, read_dicom, read_series
from kidneyct.io.errors import ImageReadError
from kidneyct.io.nifti import count_slices, read_nifti
from kidneyct.io.raster import read_raster
from kidneyct.io.slices import CTSlice

RASTER_SUFFIXES = (".jpg", ".jpeg", ".png")
DICOM_SUFFIXES = (".dcm", ".dicom")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
SUPPORTED_SUFFIXES = RASTER_SUFFIXES + DICOM_SUFFIXES + NIFTI_SUFFIXES


def file_kind(path: str | Path) -> str | None:
    """'raster', 'dicom', 'nifti' or None, from the file name."""
    name = Path(path).name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(DICOM_SUFFIXES):
        return "dicom"
    if name.endswith(RASTER_SUFFIXES):
        return "raster"
    return None


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


__all__ = [
    "CTSlice", "ImageReadError", "SUPPORTED_SUFFIXES", "count_slices", "file_kind", "list_series",
    "read_dicom", "read_nifti", "read_raster", "read_series", "read_slices",
]
