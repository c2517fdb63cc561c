"""Input expansion for prediction: files, folders (walked), DICOM series folders and NIfTI volumes become
the inputs a batch prediction reads, each read into its slices."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kidneyct.io.dicom import read_series
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


def walk_folders(root: Path) -> Iterator[tuple[Path, list[Path]]]:
    """Each folder under `root` (itself first, then its subfolders depth first, in sorted order) with its
    files that may hold slices, sorted: hidden files and phantom lesion masks are left out."""
    for current, dirs, names in os.walk(root):
        dirs.sort()
        yield Path(current), [Path(current) / name for name in sorted(names)
                              if not name.startswith(".") and MASK_MARKER not in name.lower()]


def _folder_items(folder: Path) -> list[InputItem]:
    items = []
    for current, files in walk_folders(folder):
        dicom_found = False
        for path in files:
            kind = file_kind(path)
            if kind == "dicom" or (kind is None and not path.suffix and looks_like_dicom(path)):
                dicom_found = True
            elif kind == "nifti":
                items.append(InputItem(path, "volume"))
            elif kind == "raster":
                items.append(InputItem(path, "image"))
        if dicom_found:  # the DICOM files of one folder form one series
            items.append(InputItem(current, "series"))
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
    """Slices of one input, and the files of a series left out as unreadable (a series loses only those,
    not the whole study; see `read_series`)."""
    if item.kind != "series":
        return read_slices(item.path), []
    skipped: list[tuple[str, str]] = []
    return read_series(item.path, skipped), skipped
