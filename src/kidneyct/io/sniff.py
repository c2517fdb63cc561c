"""What a file is: from its first bytes (magic numbers) when they are at hand, from its name otherwise."""

from __future__ import annotations

from pathlib import Path

from kidneyct.errors import UnsupportedFormat


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


# Image formats kidneyct does not read, by magic number: named in the refusal, never decoded.
FOREIGN_MAGICS = ((b"II*\0", "TIFF"), (b"MM\0*", "TIFF"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"BM", "BMP"),
                  (b"\0\0\1\0", "ICO"), (b"8BPS", "PSD"), (b"\0\0\0\x0cjP  ", "JPEG 2000"), (b"%PDF", "PDF"),
                  (b"PK\3\4", "ZIP"))


def foreign_format(head: bytes) -> str | None:
    """The name of an image or container format kidneyct does not read ('TIFF', 'GIF', 'WebP', ...), from a
    file's first bytes; None when none matches."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in FOREIGN_MAGICS if head.startswith(magic)), None)


def sniff_format(path: str | Path, head: bytes | None = None) -> str | None:
    """The one decision of which reader takes a file: 'png', 'jpeg', 'dicom' or 'nifti' from its content;
    its name only for content without a magic number (a DICOM file without preamble); None when neither
    tells. Raises UnsupportedFormat for content of a known format kidneyct does not read, whatever the name.

    Args:
        path: the file (its name is the hint).
        head: its first HEADER_BYTES bytes when already at hand (an upload); read from `path` otherwise.
    """
    if head is None:
        with open(path, "rb") as handle:
            head = handle.read(HEADER_BYTES)
    found = content_format(head)
    if found is not None:
        return found
    foreign = foreign_format(head)
    if foreign is not None:
        raise UnsupportedFormat(path, f"{foreign} content is not read by kidneyct (PNG, JPEG, DICOM or NIfTI)")
    return file_format(path)
