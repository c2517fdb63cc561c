"""Files that attack the readers, built in memory: decompression bombs that claim gigabytes from a few
kilobytes, and small valid seeds of every format for mutation. Used by the bad-input tests, the fuzzer and
`benchmarks/load.py --mix`; none of them is ever a patient's data."""

from __future__ import annotations

import io
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from kidneyct.synthetic.dicom_writer import write_ct_series

MIB = 1024 * 1024


def gradient(side: int = 64) -> np.ndarray:
    """A uint8 diagonal ramp: a valid, non-constant slice."""
    yy, xx = np.mgrid[:side, :side]
    return (((xx + yy) * 255) // max(1, 2 * side - 2)).astype(np.uint8)


def image_bytes(array: np.ndarray, fmt: str = "PNG", **options) -> bytes:
    """`array` encoded by Pillow in `fmt` ('PNG', 'JPEG', 'TIFF', ...)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk with its length and CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(side: int = 30000) -> bytes:
    """A few hundred bytes declaring a side x side 8-bit grey image."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"\0" * 1024))
            + png_chunk(b"IEND", b""))


def dicom_bytes(hu: np.ndarray | None = None, **dataset_changes) -> bytes:
    """A CT DICOM file of `hu` (default a 32 x 32 slice of 40 HU), with attributes set or (None) deleted.

    Args:
        hu: the slice in Hounsfield units.
        dataset_changes: keyword=value pairs set on the dataset before saving; value None deletes it;
            'TransferSyntaxUID' goes to the file meta.
    """
    import pydicom

    hu = np.full((32, 32), 40.0, np.float32) if hu is None else hu
    with tempfile.TemporaryDirectory() as folder:
        (path,) = write_ct_series(folder, [hu])
        if not dataset_changes:
            return path.read_bytes()
        ds = pydicom.dcmread(path)
        for keyword, value in dataset_changes.items():
            target = ds.file_meta if keyword == "TransferSyntaxUID" else ds
            if value is None:
                delattr(target, keyword)
            else:
                setattr(target, keyword, value)
        ds.save_as(path, enforce_file_format=True)
        return path.read_bytes()


def _explicit_element(group: int, element: int, vr: bytes, length: int) -> bytes:
    """An explicit-VR little-endian element header with a 4-byte length (OB, UN, ...)."""
    return struct.pack("<HH", group, element) + vr + b"\0\0" + struct.pack("<I", length)


def _deflated(prefix: bytes, zero_mib: int, suffix: bytes) -> bytes:
    """A raw deflate stream of prefix + `zero_mib` MiB of zeros + suffix, built in about a second: one MiB of
    zeros is compressed once after a full flush (which makes the encoding independent of what came
    before) and repeated."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    head = deflate.compress(prefix) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = deflate.compress(bytes(MIB)) + deflate.flush(zlib.Z_FULL_FLUSH)
    return head + block * zero_mib + deflate.compress(suffix) + deflate.flush()


def deflated_dicom_bomb(inflated_mib: int = 1024) -> bytes:
    """A valid deflated CT DICOM whose dataset carries a private element of `inflated_mib` MiB of zeros:
    about 1 KiB per inflated MiB on disk."""
    import pydicom
    from pydicom.filewriter import write_dataset, write_file_meta_info

    ds = pydicom.dcmread(io.BytesIO(dicom_bytes()))
    pixels = ds.PixelData
    del ds.PixelData
    body = io.BytesIO()
    write_dataset(pydicom.filebase.DicomFileLike(body), ds)  # explicit VR little endian, as read
    body.write(struct.pack("<HH", 0x0009, 0x0010) + b"LO" + struct.pack("<H", 8) + b"KIDNEYCT")
    body.write(_explicit_element(0x0009, 0x1010, b"OB", inflated_mib * MIB))
    meta = io.BytesIO()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    meta.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(pydicom.filebase.DicomFileLike(meta), ds.file_meta, enforce_standard=True)
    pixel_element = _explicit_element(0x7FE0, 0x0010, b"OW", len(pixels)) + pixels
    return meta.getvalue() + _deflated(body.getvalue(), inflated_mib, pixel_element)


def multiframe_dicom(frames: int = 150, side: int = 256) -> bytes:
    """A CT DICOM of `frames` frames of side x side 16-bit pixels (150 x 256 px: 19.7 MB)."""
    data = np.zeros((frames, side, side), np.uint16).tobytes()
    return dicom_bytes(np.zeros((side, side), np.float32), NumberOfFrames=frames, PixelData=data)


def nifti_header(shape: tuple[int, ...], dtype=np.int16) -> bytes:
    """A NIfTI-1 single-file header (352 bytes) declaring `shape` voxels of `dtype` and nothing else."""
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header.set_qform(np.eye(4), code=1)
    header["vox_offset"] = 352
    return header.binaryblock + b"\0" * 4


def nifti_header_bomb(side: int = 4096, depth: int = 4096) -> bytes:
    """352 bytes claiming a side x side x depth int16 volume (128 GiB by default)."""
    return nifti_header((side, side, depth))


def nifti_gz_bomb(inflated_mib: int = 1024, side: int = 512) -> bytes:
    """A .nii.gz whose header and int16 zeros really inflate to `inflated_mib` MiB (about 1 MB per GiB)."""
    header = nifti_header((side, side, inflated_mib * MIB // (side * side * 2)))
    crc = zlib.crc32(header)
    zeros = bytes(MIB)
    for _ in range(inflated_mib):
        crc = zlib.crc32(zeros, crc)
    size = len(header) + inflated_mib * MIB
    # A gzip member by hand (RFC 1952): header, raw deflate, CRC-32 and size of the inflated data.
    return (b"\x1f\x8b\x08\0\0\0\0\0\0\xff" + _deflated(header, inflated_mib, b"")
            + struct.pack("<II", crc, size & 0xFFFFFFFF))


def nifti_bytes(volume: np.ndarray, gz: bool = True, slope: float | None = None, inter: float | None = None) -> bytes:
    """`volume` (x, y, z) as a NIfTI-1 file, gzipped unless `gz` is false; scl_slope/scl_inter when given."""
    import nibabel as nib

    image = nib.Nifti1Image(volume, np.eye(4))
    if slope is not None or inter is not None:
        image.header.set_slope_inter(slope if slope is not None else 1.0, inter if inter is not None else 0.0)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("v.nii.gz" if gz else "v.nii")
        nib.save(image, str(path))
        return path.read_bytes()


def seed_files() -> dict[str, bytes]:
    """Small valid files of every format kidneyct reads, by file name: the fuzzer's starting points."""
    import pydicom

    ramp = gradient(32)
    volume = np.stack([ramp.astype(np.int16) * 4 - 500] * 3, axis=2)
    return {
        "seed.png": image_bytes(ramp), "seed16.png": image_bytes(ramp.astype(np.uint16) * 257),
        "seed.jpg": image_bytes(ramp, "JPEG", quality=90), "seed.dcm": dicom_bytes(ramp.astype(np.float32)),
        "seed-deflated.dcm": dicom_bytes(ramp.astype(np.float32),
                                         TransferSyntaxUID=pydicom.uid.DeflatedExplicitVRLittleEndian),
        "seed.nii": nifti_bytes(volume, gz=False), "seed.nii.gz": nifti_bytes(volume),
    }
