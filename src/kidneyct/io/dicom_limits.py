"""Opening a DICOM file within the decoded-size budget: its header parsed with large values deferred, a
deflated dataset inflated once in a bounded stream, and the pixel data's decoded size (frames x rows x
columns x samples x bits) checked before any pixel is decoded."""

from __future__ import annotations

import io
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from kidneyct.errors import ImageReadError
from kidneyct.io.budget import check_decoded_size, check_side, current_budget
from kidneyct.io.files import open_regular
from kidneyct.io.sniff import looks_like_dicom

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
        # force: DICOM without preamble (recognised by content) has no 'DICM' marker for pydicom to check.
        force = looks_like_dicom(path)
        with open_regular(path) as handle:
            preamble = pydicom.filereader.read_preamble(handle, force)
            meta = pydicom.filereader._read_file_meta_info(handle)
            if meta.get("TransferSyntaxUID") == pydicom.uid.DeflatedExplicitVRLittleEndian:
                return _inflated(path, handle, preamble, meta, stop_before_pixels)
        ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, defer_size=DEFER_BYTES, force=force)
        _name_transfer_syntax(ds)
        return ds
    except ImageReadError:
        raise
    except InvalidDicomError:
        raise ImageReadError(path, "not a DICOM file (no DICM preamble or file meta)") from None
    except Exception as error:  # pydicom raises many types for damaged files
        raise ImageReadError(path, f"corrupt DICOM file ({type(error).__name__}: {error})") from None


def _name_transfer_syntax(ds: pydicom.Dataset) -> None:
    """A stream without file meta names no transfer syntax, which pixel decoding needs: name the encoding
    pydicom read it in (implicit or explicit VR, little or big endian)."""
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    if "TransferSyntaxUID" in ds.file_meta or ds.original_encoding[0] is None:
        return
    implicit, little = ds.original_encoding
    ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                      ExplicitVRLittleEndian if little else ExplicitVRBigEndian)


class _Inflating(io.RawIOBase):
    """The deflated dataset as a seekable stream, inflated only as far as it is read and never beyond
    `limit` bytes: pydicom parses it element by element, so a bomb's huge element is refused from its
    header before its zeros are inflated."""

    def __init__(self, path: Path, handle, limit: int):
        self.path, self.handle, self.limit = path, handle, limit
        self.inflater, self.buffer, self.position = zlib.decompressobj(-zlib.MAX_WBITS), bytearray(), 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.position = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: len(self.buffer)}[whence] + offset
        return self.position

    def read(self, size: int = -1) -> bytes:
        end = self.limit + 1 if size is None or size < 0 else self.position + size
        while len(self.buffer) < end and not self.inflater.eof:
            chunk = self.inflater.unconsumed_tail or self.handle.read(_CHUNK)
            if not chunk:
                break
            self.buffer += self.inflater.decompress(chunk, min(_CHUNK, self.limit + 1 - len(self.buffer)))
            if len(self.buffer) > self.limit:
                check_decoded_size(self.path, len(self.buffer), "a deflated DICOM dataset that inflates this far")
        data = bytes(self.buffer[self.position:end])
        self.position += len(data)
        return data


def _inflated(path: Path, handle, preamble: bytes, meta, stop_before_pixels: bool) -> pydicom.Dataset:
    """The deflated dataset after the file meta, inflated once, as it is parsed, and no further than the
    budget allows (pydicom would inflate all of it, twice over, before any check)."""
    from pydicom.dataset import FileDataset
    from pydicom.filebase import DicomFileLike
    from pydicom.filereader import read_dataset

    budget, too_large = current_budget(), []

    def stop(tag, vr, length) -> bool:
        if length != 0xFFFFFFFF and length > budget:  # a value larger than any slice may be: refuse it unread
            too_large.append(length)
            return True
        return stop_before_pixels and tag == 0x7FE00010

    stream = _Inflating(path, handle, budget + HEADER_SLACK)
    dataset = read_dataset(DicomFileLike(stream), is_implicit_VR=False, is_little_endian=True, stop_when=stop)
    if too_large:
        check_decoded_size(path, too_large[0], "an element of the deflated DICOM dataset")
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
