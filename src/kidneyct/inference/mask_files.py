"""Kidney and tumor label files of a prediction (`predict --masks-out DIR`), in kidneyct's mask convention (0
background, 1 kidney, 2 tumor: what training reads as masks, so a corrected output can become training data):
a PNG per slice for single slices and a NIfTI volume for a volume, with the input volume's own voxel grid and
affine so that any viewer overlays it on the scan.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from kidneyct.io.atomic import atomic_write
from kidneyct.io.nifti import from_display
from kidneyct.labels import MASK_KIDNEY, MASK_TUMOR


def label_map(kidney: np.ndarray, tumor: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """uint8 labels (the shape of the maps) from kidney and tumor probability maps: MASK_TUMOR (2) where
    p(tumor) >= threshold, else MASK_KIDNEY (1) where p(kidney) >= threshold, else 0."""
    labels = np.where(np.asarray(kidney) >= threshold, MASK_KIDNEY, 0).astype(np.uint8)
    labels[np.asarray(tumor) >= threshold] = MASK_TUMOR
    return labels


def write_png_labels(path: str | Path, labels: np.ndarray) -> Path:
    """A uint8 label image [H, W] (values 0-2) as a greyscale PNG, written atomically."""
    path = Path(path)
    image = Image.fromarray(np.asarray(labels, np.uint8), mode="L")
    atomic_write(path, lambda stream: image.save(stream, format="PNG"))
    return path


def write_nifti_labels(path: str | Path, labels: np.ndarray, reference: str | Path) -> Path:
    """Labels of a volume's slices [Z, H, W] as kidneyct read them (display orientation, inferior first) written
    on the grid of `reference`, the NIfTI volume they were predicted on: reoriented to its canonical (RAS)
    axes, with the matching affine."""
    import nibabel as nib

    path = Path(path)
    header = nib.load(str(reference))  # the header and affine; voxels are not read
    orientation = nib.orientations.io_orientation(header.affine)
    volume = np.stack([from_display(np.asarray(plane, np.uint8)) for plane in labels], axis=2)
    affine = header.affine @ nib.orientations.inv_ornt_aff(orientation, header.shape[:3])
    canonical_shape = tuple(int(header.shape[int(np.flatnonzero(orientation[:, 0] == axis)[0])]) for axis in range(3))
    if volume.shape != canonical_shape:
        raise ValueError(f"{reference}: labels of shape {volume.shape} do not fit the volume {header.shape[:3]}")
    return _write_nifti(path, volume, affine)


def _gzipped(image) -> bytes:
    import gzip

    return gzip.compress(image.to_bytes(), compresslevel=6)


def series_affine(headers) -> np.ndarray:
    """The RAS affine of a DICOM series' voxel grid (column, row, slice), from its slices' ImagePositionPatient,
    ImageOrientationPatient and PixelSpacing (the slices in their reading order)."""
    first = headers[0]
    cosines = np.asarray([float(v) for v in first.ImageOrientationPatient])
    along_row, along_column = cosines[:3], cosines[3:]  # directions of increasing column and row index
    row_spacing, column_spacing = (float(v) for v in first.PixelSpacing)
    origin = np.asarray([float(v) for v in first.ImagePositionPatient])
    if len(headers) > 1:
        step = (np.asarray([float(v) for v in headers[-1].ImagePositionPatient]) - origin) / (len(headers) - 1)
    else:
        step = np.cross(along_row, along_column) * float(getattr(first, "SliceThickness", 1.0) or 1.0)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = along_row * column_spacing, along_column * row_spacing, step, origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # DICOM's patient axes (LPS) to NIfTI's (RAS)


def write_series_labels(path: str | Path, labels: np.ndarray, sources: list[str | Path]) -> Path:
    """Labels of a DICOM series' slices [Z, rows, columns] (the slices' own pixel grids, in the order of
    `sources`, their files) as a NIfTI volume on the series' grid: any viewer that opens the series overlays it."""
    import nibabel as nib
    import pydicom

    path = Path(path)
    headers = [pydicom.dcmread(str(source), stop_before_pixels=True) for source in sources]
    volume = np.ascontiguousarray(np.asarray(labels, np.uint8).transpose(2, 1, 0))  # [column, row, slice]
    affine = series_affine(headers)
    return _write_nifti(path, volume, affine)


def _write_nifti(path: Path, volume: np.ndarray, affine: np.ndarray) -> Path:
    """`volume` as a NIfTI on `affine` (qform and sform both set: viewers read either), written atomically."""
    import nibabel as nib

    image = nib.Nifti1Image(volume, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    atomic_write(path, lambda stream: stream.write(image.to_bytes() if not str(path).endswith(".gz")
                                                   else _gzipped(image)))
    return path
