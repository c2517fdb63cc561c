"""What a segmenting model adds to a prediction, per input: its kidney and tumor maps laid back on the input's own
pixel grid as labels (0 background, 1 kidney, 2 tumor; in-scope slices only, out-of-scope slices stay
background, and so do pixels outside the body), each in-scope slice's kidney and tumor areas, and, when asked for, the label files
(kidneyct.inference.mask_files: a PNG per single image, a NIfTI volume on the grid of a NIfTI volume or DICOM
series) and a DICOM SEG per DICOM series (kidneyct.inference.dicom_seg).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kidneyct.inference.mask_files import label_map, write_nifti_labels, write_png_labels, write_series_labels
from kidneyct.inference.pipeline import Prepared
from kidneyct.inference.scope import SliceScope
from kidneyct.io import InputItem
from kidneyct.io.atomic import atomic_write
from kidneyct.labels import MASK_TUMOR
from kidneyct.preprocess.geometry import to_slice_grid


def input_labels(entry: Prepared, maps: np.ndarray, scopes: list[SliceScope], threshold: float) -> list[np.ndarray]:
    """Per slice, uint8 labels on the slice's own grid from the maps [N, 2, V, V] (kidney, tumor probabilities on
    the body views' grid); all background for a slice out of scope."""
    labels = []
    for ct_maps, (shape, box, keep), scope in zip(maps, entry.frames, scopes):
        if not scope.in_scope:
            labels.append(np.zeros(shape, np.uint8))
            continue
        kidney, tumor = to_slice_grid(ct_maps, box, shape, keep)  # nothing outside the body
        labels.append(label_map(kidney, tumor, threshold))
    return labels


def areas(labels: np.ndarray, spacing: tuple[float, float] | None) -> dict[str, float | int | None]:
    """Kidney (tumor included) and tumor areas of one slice's labels, in pixels and, with a pixel spacing (mm), in
    mm^2."""
    kidney, tumor = int((labels > 0).sum()), int((labels == MASK_TUMOR).sum())
    pixel = None if spacing is None else float(spacing[0]) * float(spacing[1])
    return {"kidney_px": kidney, "tumor_px": tumor,
            "kidney_mm2": None if pixel is None else round(kidney * pixel, 2),
            "tumor_mm2": None if pixel is None else round(tumor * pixel, 2)}


class MaskFiles:
    """Label files under `folder`, with names unique within it: `<stem>.labels.png` for a single image,
    `<stem>.labels.nii.gz` for a NIfTI volume or DICOM series."""

    def __init__(self, folder: str | Path):
        self.folder, self.used = Path(folder), set()
        self.folder.mkdir(parents=True, exist_ok=True)

    def name(self, item: InputItem, suffix: str) -> Path:
        stem = item.path.name.split(".")[0] if item.kind != "series" else item.path.name
        name, number = f"{stem}{suffix}", 2
        while name in self.used:  # the same file name in two folders
            name, number = f"{stem}-{number}{suffix}", number + 1
        self.used.add(name)
        return self.folder / name

    def write(self, entry: Prepared, labels: list[np.ndarray]) -> Path:
        """The input's label file."""
        item = entry.item
        if item.kind == "volume":
            order = np.argsort([s.index for s in entry.slices])
            return write_nifti_labels(self.name(item, ".labels.nii.gz"), np.stack([labels[i] for i in order]),
                                      item.path)
        if item.kind == "series":
            return write_series_labels(self.name(item, ".labels.nii.gz"), np.stack(labels),
                                       [s.source for s in entry.slices])
        return write_png_labels(self.name(item, ".labels.png"), labels[0])


def write_dicom_seg(entry: Prepared, labels: list[np.ndarray], folder: str | Path, model_name: str) -> Path | None:
    """A DICOM SEG of a DICOM series' labels under `folder/<StudyInstanceUID>/` (beside the SR of
    `--dicom-out`); None for other inputs."""
    if entry.item.kind != "series":
        return None
    import pydicom

    from kidneyct.inference.dicom_seg import build_segmentation

    sources = [pydicom.dcmread(s.source, stop_before_pixels=True) for s in entry.slices]
    segmentation = build_segmentation(sources, np.stack(labels), model_name)
    path = Path(folder) / str(sources[0].StudyInstanceUID) / f"SEG-{segmentation.SOPInstanceUID}.dcm"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda stream: segmentation.save_as(stream, enforce_file_format=True))
    return path


class TumorMapExplainer:
    """A segmenting model's heatmaps: its own tumor probability map on the body view, whichever class is asked
    for (where the model sees tumor; a Grad-CAM of its slice head would only point at the encoder's coarse cells).
    Works on both backends. `--cam-layer` still asks for Grad-CAM of a layer instead (PyTorch)."""

    label = "tumor map burned in: where the segmenting model sees tumor, not a diagnosis"

    def __init__(self, backend):
        self.backend = backend

    def heatmaps(self, images: np.ndarray, class_indices, batch_size: int = 16) -> np.ndarray:
        """Tumor probabilities [N, V, V] in [0, 1] for uint8 body views [N, V, V]."""
        return self.backend.looked(np.asarray(images), batch_size).maps[:, 1]
