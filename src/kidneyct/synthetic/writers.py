"""Write rendered phantom series as PNG slices, DICOM series or NIfTI volumes, masks beside them."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

from kidneyct.io.nifti import from_display
from kidneyct.preprocess import window_to_uint8

PIXEL_SPACING_MM = 0.8
SLICE_THICKNESS_MM = 5.0


def _bbox(mask: np.ndarray) -> str:
    if not mask.any():
        return ""
    ys, xs = np.nonzero(mask)
    return f"{xs.min()} {ys.min()} {xs.max()} {ys.max()}"


def _row(path: Path, root: Path, class_name, series_id, index, z, mask, mask_path) -> dict:
    return {
        "path": path.relative_to(root).as_posix(), "class": class_name, "series": series_id,
        "slice_index": index, "z": round(float(z), 4), "lesion_pixels": int(mask.sum()),
        "lesion_bbox": _bbox(mask), "mask": mask_path.relative_to(root).as_posix() if mask_path else "",
        "synthetic": 1,
    }


def write_png(folder: Path, class_name, series_id, first_number, slices, positions, seed) -> list[dict]:
    rows = []
    root = folder.parent
    for offset, ((hu, mask), z) in enumerate(zip(slices, positions)):
        number = first_number + offset + 1
        path = folder / f"{class_name}- ({number}).png"
        Image.fromarray(window_to_uint8(hu)).save(path)
        mask_path = None
        if mask.any():
            mask_path = folder / f"{class_name}- ({number}).mask.png"
            Image.fromarray(mask.astype(np.uint8) * 255).save(mask_path)
        rows.append(_row(path, root, class_name, series_id, offset, z, mask, mask_path))
    return rows


def write_nifti(folder: Path, class_name, series_id, first_number, slices, positions, seed) -> list[dict]:
    root = folder.parent
    volume = np.stack([from_display(hu) for hu, _ in slices], axis=2)
    masks = np.stack([from_display(mask.astype(np.uint8)) for _, mask in slices], axis=2)
    affine = np.diag([PIXEL_SPACING_MM, PIXEL_SPACING_MM, SLICE_THICKNESS_MM, 1.0])
    path = folder / f"{series_id}.nii.gz"
    image = nib.Nifti1Image(np.rint(volume).astype(np.int16), affine)
    image.header.set_xyzt_units("mm")
    nib.save(image, str(path))
    mask_path = None
    if masks.any():
        mask_path = folder / f"{series_id}.mask.nii.gz"
        nib.save(nib.Nifti1Image(masks, affine), str(mask_path))
    return [_row(path, root, class_name, series_id, i, z, mask, mask_path)
            for i, ((_, mask), z) in enumerate(zip(slices, positions))]


def write_dicom(folder: Path, class_name, series_id, first_number, slices, positions, seed) -> list[dict]:
    from kidneyct.synthetic.dicom_writer import write_ct_series  # here for start-up speed: pydicom only for DICOM

    root = folder.parent
    series_folder = folder / series_id
    paths = write_ct_series(series_folder, [hu for hu, _ in slices], PIXEL_SPACING_MM, SLICE_THICKNESS_MM,
                            patient_id=series_id, seed=seed)
    rows = []
    for i, (path, (_, mask), z) in enumerate(zip(paths, slices, positions)):
        mask_path = None
        if mask.any():
            mask_path = path.with_suffix(".mask.png")
            Image.fromarray(mask.astype(np.uint8) * 255).save(mask_path)
        rows.append(_row(path, root, class_name, series_id, i, z, mask, mask_path))
    return rows


WRITERS = {"png": write_png, "dicom": write_dicom, "nifti": write_nifti}


def write_label_pngs(root: Path, rows: list[dict], maps: list[np.ndarray]) -> None:
    """masks/<image stem>.png under `root`, one per written slice (`rows` of `write_png`)."""
    (root / "masks").mkdir(exist_ok=True)
    for row, labels in zip(rows, maps):
        Image.fromarray(labels).save(root / "masks" / f"{Path(row['path']).stem}.png")


def write_label_volume(root: Path, rows: list[dict], maps: list[np.ndarray]) -> None:
    """masks/<series>.nii.gz under `root`: the label slices of one written volume (`rows` of `write_nifti`)."""
    (root / "masks").mkdir(exist_ok=True)
    volume = np.stack([from_display(labels) for labels in maps], axis=2)
    affine = np.diag([PIXEL_SPACING_MM, PIXEL_SPACING_MM, SLICE_THICKNESS_MM, 1.0])
    name = Path(rows[0]["path"]).name.removesuffix(".nii.gz")
    nib.save(nib.Nifti1Image(volume, affine), str(root / "masks" / f"{name}.nii.gz"))


LABEL_WRITERS = {"png": write_label_pngs, "nifti": write_label_volume}
