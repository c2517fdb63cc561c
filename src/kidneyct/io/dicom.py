"""DICOM slices and series through pydicom: stored values to Hounsfield units via the modality LUT."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kidneyct.errors import ImageReadError
from kidneyct.io.raster import MAX_SIDE
from kidneyct.io.slices import CTSlice
from kidneyct.io.sniff import file_kind, looks_like_dicom

if TYPE_CHECKING:
    import pydicom

# Modalities whose pixel values are Hounsfield units after the modality LUT.
HU_MODALITIES = {"CT"}


def _dataset(path: Path, stop_before_pixels: bool = False) -> pydicom.Dataset:
    import pydicom  # deferred, like nibabel in nifti.py: slice-image work never loads the DICOM stack
    from pydicom.errors import InvalidDicomError

    try:
        # force: DICOM without preamble (recognised by content) has no 'DICM' marker for pydicom to check.
        ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=looks_like_dicom(path))
    except InvalidDicomError:
        raise ImageReadError(path, "not a DICOM file (no DICM preamble or file meta)") from None
    except Exception as error:  # pydicom raises many types for damaged files
        raise ImageReadError(path, f"corrupt DICOM file ({type(error).__name__}: {error})") from None
    _name_transfer_syntax(ds)
    return ds


def _name_transfer_syntax(ds: pydicom.Dataset) -> None:
    """A stream without file meta names no transfer syntax, which pixel decoding needs: name the encoding
    pydicom read it in (implicit or explicit VR, little or big endian)."""
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    if "TransferSyntaxUID" in ds.file_meta or ds.original_encoding[0] is None:
        return
    implicit, little = ds.original_encoding
    ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                      ExplicitVRLittleEndian if little else ExplicitVRBigEndian)


def read_dicom(path: str | Path, allow_non_ct: bool = False) -> CTSlice:
    path = Path(path)
    ds = _dataset(path)
    modality = str(getattr(ds, "Modality", "") or "").upper() or None
    if modality not in HU_MODALITIES and modality is not None and not allow_non_ct:
        raise ImageReadError(
            path, f"modality is {modality}, not CT: kidneyct models read CT in Hounsfield units only"
        )
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ImageReadError(path, "DICOM file has no pixel data")
    rows, columns = int(getattr(ds, "Rows", 0)), int(getattr(ds, "Columns", 0))
    if rows > MAX_SIDE or columns > MAX_SIDE:
        raise ImageReadError(path, f"image is {columns}x{rows} pixels, above the {MAX_SIDE}-pixel limit")
    try:
        stored = ds.pixel_array
    except Exception as error:
        raise ImageReadError(path, f"cannot decode DICOM pixel data ({type(error).__name__}: {error})") from None
    if stored.ndim == 3 and int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        raise ImageReadError(path, "multi-frame DICOM is not supported; export one slice per file")
    if stored.ndim != 2:
        raise ImageReadError(path, f"expected a single grey slice, got pixel array of shape {stored.shape}")
    from pydicom.pixels import apply_modality_lut  # deferred with pydicom itself (see _dataset)

    values = apply_modality_lut(stored, ds).astype(np.float32)
    is_hu = modality in HU_MODALITIES or modality is None
    if not is_hu:  # non-CT allowed by the caller: rescale to [0, 1] like a display image
        lo, hi = float(values.min()), float(values.max())
        values = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    return CTSlice(
        pixels=values,
        hu=is_hu,
        source=str(path),
        series=str(getattr(ds, "SeriesInstanceUID", "")) or None,
        modality=modality,
        position=_slice_position(ds)[0] if getattr(ds, "ImagePositionPatient", None) is not None else None,
    )


def _slice_position(ds: pydicom.Dataset) -> tuple[float, float]:
    """Sort key: position along the slice normal when known, else InstanceNumber."""
    position = getattr(ds, "ImagePositionPatient", None)
    orientation = getattr(ds, "ImageOrientationPatient", None)
    instance = float(getattr(ds, "InstanceNumber", 0) or 0)
    if position is not None and orientation is not None and len(orientation) == 6:
        normal = np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:], float))
        return float(np.dot(normal, np.asarray(position, float))), instance
    if position is not None:
        return float(position[2]), instance
    return instance, instance


def list_series(folder: str | Path, files: list[Path] | None = None) -> list[Path]:
    """DICOM files of one series folder (or the given `files` of one series) in anatomical order
    (ImagePositionPatient, else InstanceNumber)."""
    folder = Path(folder)
    keyed = []
    for file in sorted(files) if files is not None else sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            ds = _dataset(file, stop_before_pixels=True)
        except ImageReadError:
            continue  # not DICOM (DICOMDIR viewers, readme files): not part of the series
        keyed.append((_slice_position(ds), file))
    if not keyed:
        raise ImageReadError(folder, "folder holds no readable DICOM files")
    keyed.sort(key=lambda item: item[0])
    return [file for _, file in keyed]


def read_series(folder: str | Path, skipped: list[tuple[str, str]] | None = None,
                files: list[Path] | None = None) -> list[CTSlice]:
    """The slices of a series folder (or of `files`, one series of a folder that holds several) in anatomical
    order, each with its position in the sorted series as `index`.

    Without `skipped`, the first unreadable file raises its ImageReadError. With it, the series loses only
    its unreadable files (added to `skipped` as (path, reason), DICOM-named files that are no DICOM among
    them), not the whole study; a folder with no readable slice raises an ImageReadError that carries them
    in its `skipped`."""
    folder = Path(folder)
    given = files
    files = list_series(folder, given)
    if skipped is None:
        return [_indexed(read_dicom(file), index) for index, file in enumerate(files)]
    listed = set(files)
    candidates = sorted(given) if given is not None else sorted(folder.iterdir())
    found = [(str(p), "not a readable DICOM file") for p in candidates
             if (given is not None or file_kind(p) == "dicom") and p not in listed]
    slices = []
    for index, file in enumerate(files):
        try:
            slices.append(_indexed(read_dicom(file), index))
        except ImageReadError as error:
            found.append((error.path, error.reason))
    if not slices:
        error = ImageReadError(folder, "no readable slice in the DICOM series")
        error.skipped = found  # each file's own reason still reaches the report
        raise error
    skipped += found
    return slices


def _indexed(ct_slice: CTSlice, index: int) -> CTSlice:
    ct_slice.index = index
    return ct_slice
