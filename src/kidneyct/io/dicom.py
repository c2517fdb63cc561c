"""DICOM slices and series through pydicom: stored values to Hounsfield units via the modality LUT."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kidneyct.errors import ImageReadError
from kidneyct.io.dicom_limits import check_pixel_header, open_dataset
from kidneyct.io.slices import CTSlice
from kidneyct.io.sniff import file_kind
from kidneyct.io.validate import check_rescale, check_slice

if TYPE_CHECKING:
    import pydicom

# Modalities whose pixel values are Hounsfield units after the modality LUT.
HU_MODALITIES = {"CT"}
NO_MODALITY = ("DICOM without Modality: read as CT (Hounsfield units through the rescale tags); "
               "nothing in the header says it is CT")


def read_dicom(path: str | Path, allow_non_ct: bool = False) -> CTSlice:
    """One DICOM slice in Hounsfield units (CT) or scaled to [0, 1] (other modalities, when allowed).

    Args:
        path: the file.
        allow_non_ct: read MR, PET... instead of refusing them.

    Returns:
        The slice. Raises ImageReadError for anything unreadable, malformed attributes included.
    """
    path = Path(path)
    try:
        return _read(path, allow_non_ct)
    except ImageReadError:
        raise
    except Exception as error:  # a malformed attribute (a text where a number belongs) surfaces on use
        raise ImageReadError(path, f"malformed DICOM ({type(error).__name__}: {error})") from None


def _read(path: Path, allow_non_ct: bool) -> CTSlice:
    ds = open_dataset(path)
    modality = str(ds.get("Modality", "") or "").upper() or None
    if modality not in HU_MODALITIES and modality is not None and not allow_non_ct:
        raise ImageReadError(
            path, f"modality is {modality}, not CT: kidneyct models read CT in Hounsfield units only"
        )
    check_pixel_header(path, ds)
    try:
        stored = ds.pixel_array
    except Exception as error:
        raise ImageReadError(path, f"cannot decode DICOM pixel data ({type(error).__name__}: {error})") from None
    if stored.ndim != 2:
        raise ImageReadError(path, f"expected a single grey slice, got pixel array of shape {stored.shape}")
    check_rescale(path, _value(ds, "RescaleSlope", 1), _value(ds, "RescaleIntercept", 0))
    from pydicom.pixels import apply_modality_lut  # deferred with pydicom itself (see open_dataset)

    values = apply_modality_lut(stored, ds).astype(np.float32, copy=False)
    is_hu = modality in HU_MODALITIES or modality is None
    if not is_hu:  # non-CT allowed by the caller: rescale to [0, 1] like a display image
        lo, hi = float(values.min()), float(values.max())
        values = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    position = _slice_position(ds)[0] if ds.get("ImagePositionPatient") is not None else None
    return check_slice(CTSlice(pixels=values, hu=is_hu, source=str(path), position=position,
                               series=str(ds.get("SeriesInstanceUID", "")) or None, modality=modality,
                               warnings=(NO_MODALITY,) if modality is None else (),
                               spacing=_pixel_spacing(ds)))


def _pixel_spacing(ds: pydicom.Dataset) -> tuple[float, float] | None:
    """PixelSpacing (rows, columns) in mm; None when absent or not two positive numbers."""
    try:
        values = [float(v) for v in ds.get("PixelSpacing") or []]
    except (TypeError, ValueError):
        return None
    return (values[0], values[1]) if len(values) == 2 and min(values) > 0 else None


def _value(ds: pydicom.Dataset, keyword: str, default: float):
    """An attribute's value; `default` when absent or empty (an empty value means 'not given')."""
    value = ds.get(keyword)
    return default if value is None or value == "" else value


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
            ds = open_dataset(file, stop_before_pixels=True)
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
