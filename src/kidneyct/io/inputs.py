"""Input expansion for prediction: files, folders (walked), DICOM series folders and NIfTI volumes become
the inputs a batch prediction reads, each read into its slices."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kidneyct.errors import ImageReadError
from kidneyct.io.dicom import list_series, read_dicom
from kidneyct.io.read import read_slices
from kidneyct.io.slices import CTSlice
from kidneyct.io.sniff import MASK_MARKER, file_kind, looks_like_dicom


@dataclass(frozen=True)
class InputItem:
    path: Path
    kind: str  # "image" (one file, one or more slices), "series" (DICOM folder) or "volume" (NIfTI)

    @property
    def is_study(self) -> bool:
        return self.kind in ("series", "volume")


def _folder_items(folder: Path) -> list[InputItem]:
    items = []
    for current, dirs, names in os.walk(folder):
        dirs.sort()
        dicom_found = False
        for name in sorted(names):
            path = Path(current) / name
            if name.startswith(".") or MASK_MARKER in name.lower():
                continue  # hidden files and phantom lesion masks are no slices
            kind = file_kind(path)
            if kind == "dicom" or (kind is None and not path.suffix and looks_like_dicom(path)):
                dicom_found = True
            elif kind == "nifti":
                items.append(InputItem(path, "volume"))
            elif kind == "raster":
                items.append(InputItem(path, "image"))
        if dicom_found:  # the DICOM files of one folder form one series
            items.append(InputItem(Path(current), "series"))
    return items


def expand_inputs(inputs) -> tuple[list[InputItem], list[tuple[str, str]]]:
    """Files stay files (NIfTI ones become volumes); folders are walked: each folder holding DICOM
    files is one series, images and volumes beneath are listed one by one. Returns (items, skipped)."""
    items, skipped = [], []
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            found = _folder_items(path)
            if not found:
                skipped.append((str(path), "folder holds no JPG, PNG, DICOM or NIfTI files"))
            items += found
        elif path.exists():
            items.append(InputItem(path, "volume" if file_kind(path) == "nifti" else "image"))
        else:
            skipped.append((str(path), "file not found"))
    return items, skipped


def read_item(item: InputItem) -> tuple[list[CTSlice], list[tuple[str, str]]]:
    """Slices of one input. A series loses only its unreadable files (reported), not the whole study;
    slice indices stay positions in the sorted series."""
    if item.kind != "series":
        return read_slices(item.path), []
    files = list_series(item.path)
    listed = set(files)
    skipped = [(str(p), "not a readable DICOM file") for p in sorted(item.path.iterdir())
               if file_kind(p) == "dicom" and p not in listed]
    slices = []
    for index, file in enumerate(files):
        try:
            ct_slice = read_dicom(file)
        except ImageReadError as error:
            skipped.append((error.path, error.reason))
            continue
        ct_slice.index = index
        slices.append(ct_slice)
    if not slices:
        error = ImageReadError(item.path, "no readable slice in the DICOM series")
        error.skipped = skipped  # each file's own reason still reaches the report
        raise error
    return slices, skipped
