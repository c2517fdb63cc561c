"""Opening a DICOM file within the decoded-size budget: its header parsed with large values deferred, a
deflated dataset inflated once in a bounded stream, and the pixel data's decoded size (frames x rows x
columns x samples x bits) checked before any pixel is decoded."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from kidneyct.errors import ImageReadError
from kidneyct.io.budget import check_decoded_size, check_side, current_budget

if TYPE_CHECKING:
    import pydicom

DEFER_BYTES = 64 * 1024  # values larger than this are read from the file only when used (pixel data)
HEADER_SLACK = 1024 * 1024  # non-pixel elements a dataset may carry beside its pixels
_CHUNK = 1024 * 1024


def open_dataset(path: Path, stop_before_pixels: bool = False) -> pydicom.Dataset:
    """The file's dataset with its large values deferred; ImageReadError for files that are no DICOM, are
    damaged, or (deflated) inflate beyond the budget.

    Args:
        path: the file.
        stop_before_pixels: parse the header only (sorting a series).
    """
    import pydicom  # deferred: slice-image work never loads the DICOM stack
    from pydicom.errors import InvalidDicomError

    try:
        if path.stat().st_size > current_budget() + HEADER_SLACK:
            check_decoded_size(path, path.stat().st_size, "a DICOM file this large")
        with open(path, "rb") as handle:
            preamble = pydicom.filereader.read_preamble(handle, False)
            meta = pydicom.filereader._read_file_meta_info(handle)
            if meta.get("TransferSyntaxUID") == pydicom.uid.DeflatedExplicitVRLittleEndian:
                return _inflated(path, handle, preamble, meta, stop_before_pixels)
        return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, defer_size=DEFER_BYTES)
    except ImageReadError:
        raise
    except InvalidDicomError:
        raise ImageReadError(path, "not a DICOM file (no DICM preamble or file meta)") from None
    except Exception as error:  # pydicom raises many types for damaged files
        raise ImageReadError(path, f"corrupt DICOM file ({type(error).__name__}: {error})") from None


def _inflated(path: Path, handle, preamble: bytes, meta, stop_before_pixels: bool) -> pydicom.Dataset:
    """The deflated dataset after the file meta, inflated once into memory and no further than the budget
    allows (pydicom would inflate all of it, twice over, before any check)."""
    from pydicom.dataset import FileDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import read_dataset

    limit = current_budget() + HEADER_SLACK
    inflater, parts, size = zlib.decompressobj(-zlib.MAX_WBITS), [], 0
    while chunk := inflater.unconsumed_tail or handle.read(_CHUNK):
        part = inflater.decompress(chunk, limit + 1 - size)
        parts.append(part)
        size += len(part)
        if size > limit:
            check_decoded_size(path, size, "a deflated DICOM dataset that inflates this far")
        if inflater.eof:
            break
    stop = (lambda tag, vr, length: tag == 0x7FE00010) if stop_before_pixels else None
    dataset = read_dataset(DicomBytesIO(b"".join(parts)), is_implicit_VR=False, is_little_endian=True,
                           stop_when=stop)
    return FileDataset(str(path), dataset, preamble=preamble, file_meta=meta, is_implicit_VR=False,
                       is_little_endian=True)


def check_pixel_header(path: Path, ds: pydicom.Dataset) -> None:
    """Refuse from the header: no pixel data, sides beyond the limit, several frames, several samples
    per pixel, or more decoded bytes than the budget."""
    if not any(key in ds for key in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ImageReadError(path, "DICOM file has no pixel data")
    rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples, bits = int(ds.get("SamplesPerPixel", 1) or 1), int(ds.get("BitsAllocated", 16) or 16)
    check_side(path, columns, rows)
    check_decoded_size(path, frames * rows * columns * samples * max(1, bits // 8),
                       f"{frames} frame(s) of {columns}x{rows} x {samples} sample(s) x {bits} bits")
    if frames > 1:
        raise ImageReadError(path, f"multi-frame DICOM ({frames} frames) is not supported; "
                                   "export one slice per file")
    if samples != 1:
        raise ImageReadError(path, f"expected a single grey slice, got {samples} samples per pixel")
