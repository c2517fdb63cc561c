"""What a file is: from its first bytes (magic numbers) when they are at hand, from its name otherwise."""

from __future__ import annotations

import struct
from pathlib import Path

from kidneyct.errors import ImageReadError, UnsupportedFormat
from kidneyct.io.files import open_regular


# Files written beside images that are not images of their own (phantom lesion masks).
MASK_MARKER = ".mask."

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
GZIP_MAGIC = b"\x1f\x8b"
DICOM_PREAMBLE = 128  # bytes before the 'DICM' marker of a DICOM file
NIFTI_MAGIC_AT, NIFTI_MAGICS = 344, (b"n+1\0", b"ni1\0")
HEADER_BYTES = NIFTI_MAGIC_AT + 4  # enough of a file's start for content_format
# A DICOM stream written without preamble and marker (old PACS exports, DICOM-over-network dumps) starts with
# its first element: group 0x0002 (file meta) or 0x0008 (identifying), in little endian.
DICOM_FIRST_GROUPS = (0x0002, 0x0008)
DICOM_VRS = frozenset(b"AE AS AT CS DA DS DT FL FD IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN "
                      b"UR US UT UV".split())
DICOMDIR = "DICOMDIR"  # the index file of DICOM media, always this name

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


def _dicom_without_preamble(head: bytes) -> bool:
    """A first element of group 0x0002 or 0x0008 with an explicit VR, or an implicit-VR length that fits
    the file's start: what a DICOM stream without preamble begins with."""
    if len(head) < 8:
        return False
    group, element = struct.unpack("<HH", head[:4])
    if group not in DICOM_FIRST_GROUPS or element > 0x0100:
        return False
    return head[4:6] in DICOM_VRS or struct.unpack("<I", head[4:8])[0] <= 1024


def content_format(head: bytes) -> str | None:
    """'dicom', 'png', 'jpeg' or 'nifti' from a file's first HEADER_BYTES bytes, None when no magic number
    matches. A gzip stream counts as NIfTI: .nii.gz is the one compressed format kidneyct reads. DICOM is
    recognised by its 'DICM' marker after the 128-byte preamble, or without either by its first element."""
    if head[DICOM_PREAMBLE:DICOM_PREAMBLE + 4] == b"DICM":
        return "dicom"
    if head.startswith(PNG_MAGIC):
        return "png"
    if head.startswith(JPEG_MAGIC):
        return "jpeg"
    if head.startswith(GZIP_MAGIC) or head[NIFTI_MAGIC_AT:NIFTI_MAGIC_AT + 4] in NIFTI_MAGICS:
        return "nifti"
    if _dicom_without_preamble(head):  # last: the weakest test, after every magic number
        return "dicom"
    return None


def looks_like_dicom(path: str | Path) -> bool:
    """Whether the content is DICOM (with or without preamble), whatever the file is called."""
    try:
        with open_regular(path) as handle:
            return content_format(handle.read(HEADER_BYTES)) == "dicom"
    except (OSError, ImageReadError):
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
        with open_regular(path) as handle:
            head = handle.read(HEADER_BYTES)
    found = content_format(head)
    if found is not None:
        return found
    foreign = foreign_format(head)
    if foreign is not None:
        raise UnsupportedFormat(path, f"{foreign} content is not read by kidneyct (PNG, JPEG, DICOM or NIfTI)")
    return file_format(path)
def input_kind(path: str | Path) -> str | None:
    """Which reader takes the file: its name decides for the known image suffixes; any other file (no
    suffix, or one PACS exports give, such as the last component of a UID in `CT.1.3.12.2.1107.5.1.4`) is
    DICOM when its content is.

    Returns:
        'raster', 'dicom', 'nifti' or None (not an image kidneyct reads).
    """
    kind = file_kind(path)
    if kind is not None:
        return kind
    return "dicom" if looks_like_dicom(path) else None
