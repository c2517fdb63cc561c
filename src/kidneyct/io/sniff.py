"""What a file is, from its name (and, for suffix-less files, the DICOM marker in its content)."""

from __future__ import annotations

from pathlib import Path

RASTER_SUFFIXES = (".jpg", ".jpeg", ".png")
DICOM_SUFFIXES = (".dcm", ".dicom")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
SUPPORTED_SUFFIXES = RASTER_SUFFIXES + DICOM_SUFFIXES + NIFTI_SUFFIXES
# Files written beside images that are not images of their own (phantom lesion masks).
MASK_MARKER = ".mask."


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


def looks_like_dicom(path: str | Path) -> bool:
    """Suffix-less files are often DICOM: check the 'DICM' marker after the 128-byte preamble."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False
