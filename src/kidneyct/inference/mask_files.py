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
    image = nib.Nifti1Image(volume, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    atomic_write(path, lambda stream: stream.write(image.to_bytes() if not str(path).endswith(".gz")
                                                   else _gzipped(image)))
    return path


def _gzipped(image) -> bytes:
    import gzip

    return gzip.compress(image.to_bytes(), compresslevel=6)
