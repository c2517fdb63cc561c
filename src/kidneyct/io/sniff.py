"""What a file is: from its first bytes (magic numbers) when they are at hand, from its name otherwise."""

from __future__ import annotations

from pathlib import Path

# Files written beside images that are not images of their own (phantom lesion masks).
MASK_MARKER = ".mask."

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
GZIP_MAGIC = b"\x1f\x8b"
DICOM_PREAMBLE = 128  # bytes before the 'DICM' marker of a DICOM file
NIFTI_MAGIC_AT, NIFTI_MAGICS = 344, (b"n+1\0", b"ni1\0")
HEADER_BYTES = NIFTI_MAGIC_AT + 4  # enough of a file's start for content_format

# Formats by name ('png', 'jpeg', 'dicom', 'nifti'), from a file's suffix or its content's magic number.
SUFFIX_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".dcm": "dicom", ".dicom": "dicom",
                  ".nii": "nifti", ".nii.gz": "nifti"}
SUPPORTED_SUFFIXES = tuple(SUFFIX_FORMATS)


def file_format(path: str | Path) -> str | None:
    """'png', 'jpeg', 'dicom', 'nifti' or None, from the file name."""
    name = Path(path).name.lower()
    return next((fmt for suffix, fmt in SUFFIX_FORMATS.items() if name.endswith(suffix)), None)


def file_kind(path: str | Path) -> str | None:
    """Which reader takes the file, from its name: 'raster' (JPG, PNG), 'dicom', 'nifti' or None."""
    fmt = file_format(path)
    return "raster" if fmt in ("png", "jpeg") else fmt


def content_format(head: bytes) -> str | None:
    """'dicom', 'png', 'jpeg' or 'nifti' from a file's first HEADER_BYTES bytes, None when no magic number
    matches. A gzip stream counts as NIfTI: .nii.gz is the one compressed format kidneyct reads."""
    if head[DICOM_PREAMBLE:DICOM_PREAMBLE + 4] == b"DICM":
        return "dicom"
    if head.startswith(PNG_MAGIC):
        return "png"
    if head.startswith(JPEG_MAGIC):
        return "jpeg"
    if head.startswith(GZIP_MAGIC) or head[NIFTI_MAGIC_AT:NIFTI_MAGIC_AT + 4] in NIFTI_MAGICS:
        return "nifti"
    return None


def looks_like_dicom(path: str | Path) -> bool:
    """Suffix-less files are often DICOM: check the 'DICM' marker after the 128-byte preamble."""
    try:
        with open(path, "rb") as handle:
            return content_format(handle.read(DICOM_PREAMBLE + 4)) == "dicom"
    except OSError:
        return False
