"""Input expansion for prediction: files, folders (walked), DICOM series and NIfTI volumes become the inputs a
batch prediction reads, each read into its slices.

DICOM is found by content as well as by name (PACS exports name files by their UIDs, or not at all); the
DICOM files of a folder form one series per SeriesInstanceUID, and a DICOMDIR is followed to the files it
lists, wherever they lie below it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kidneyct.errors import ImageReadError
from kidneyct.io.dicom import read_series
from kidneyct.io.files import file_problem
from kidneyct.io.pacs import dicomdir_series, group_series
from kidneyct.io.read import read_slices
from kidneyct.io.slices import CTSlice
from kidneyct.io.sniff import DICOMDIR, MASK_MARKER, file_kind, input_kind


@dataclass(frozen=True)
class InputItem:
    path: Path
    kind: str  # "image" (one file, one or more slices), "series" (DICOM) or "volume" (NIfTI)
    files: tuple[Path, ...] | None = None  # a series' files (None: every DICOM file of `path`)
    label: str | None = None  # how results name it, when `path` alone does not (several series in one folder)
    slices: tuple[CTSlice, ...] | None = None  # given in memory (an array, an upload): nothing to read

    @property
    def is_study(self) -> bool:
        return self.kind in ("series", "volume")

    @property
    def name(self) -> str:
        return self.label or str(self.path)


def walk_folders(root: Path) -> Iterator[tuple[Path, list[Path]]]:
    """Each folder under `root` (itself first, then its subfolders depth first, in sorted order) with its
    files that may hold slices, sorted: hidden files and phantom lesion masks are left out."""
    for current, dirs, names in os.walk(root):
        dirs.sort()
        yield Path(current), [Path(current) / name for name in sorted(names)
                              if not name.startswith(".") and MASK_MARKER not in name.lower()]


def _series_items(source: Path, groups: list[tuple[str, list[Path]]]) -> list[InputItem]:
    """One series input per SeriesInstanceUID; named by `source` alone when it holds one series."""
    several = len(groups) > 1
    return [InputItem(source if source.is_dir() else source.parent, "series", tuple(files),
                      f"{source} [series {uid or 'without UID'}]" if several else str(source))
            for uid, files in groups]


def _dicomdir_items(dicomdir: Path, claimed: set[Path], skipped: list[tuple[str, str]]) -> list[InputItem]:
    """The series a DICOMDIR lists (their files `claimed`, so the walk does not read them twice)."""
    try:
        groups = dicomdir_series(dicomdir)
    except ImageReadError as error:
        skipped.append((error.path, error.reason))
        return []
    claimed.update(path for _, files in groups for path in files)
    return _series_items(dicomdir, groups)


def unreadable(path: Path) -> str | None:
    """Why a file is skipped before anything opens it: not a regular file (a named pipe would block the run
    forever), or empty. None for a file worth reading."""
    problem = file_problem(path)
    if problem is None and path.stat().st_size == 0:
        return "file is empty (0 bytes)"
    return problem


def _folder_items(root: Path, skipped: list[tuple[str, str]]) -> list[InputItem]:
    items: list[InputItem] = []
    claimed: set[Path] = set()
    for current, files in walk_folders(root):
        if (current / DICOMDIR).is_file():
            items += _dicomdir_items(current / DICOMDIR, claimed, skipped)
        dicom = []
        for path in files:
            if path in claimed or path.name == DICOMDIR:
                continue
            reason = unreadable(path)
            if reason is not None:
                skipped.append((str(path), reason))
                continue
            kind = input_kind(path)
            if kind == "dicom":
                dicom.append(path)
            elif kind == "nifti":
                items.append(InputItem(path, "volume"))
            elif kind == "raster":
                items.append(InputItem(path, "image"))
        if dicom:
            items += _series_items(current, group_series(dicom))
    return items


def _file_items(path: Path, skipped: list[tuple[str, str]]) -> list[InputItem]:
    if path.name == DICOMDIR:
        return _dicomdir_items(path, set(), skipped)
    return [InputItem(path, "volume" if file_kind(path) == "nifti" else "image")]


def expand_inputs(inputs) -> tuple[list[InputItem], list[tuple[str, str]]]:
    """Files stay files (NIfTI ones become volumes, a DICOMDIR its series); folders are walked: the DICOM
    files of each folder form one series per SeriesInstanceUID, images and volumes beneath are listed one by
    one. Returns (items, skipped)."""
    items, skipped = [], []
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            found = _folder_items(path, skipped)
            if not found:
                skipped.append((str(path), "folder holds no JPG, PNG, DICOM or NIfTI files"))
            items += found
        elif path.exists():
            reason = unreadable(path)
            if reason is None:
                items += _file_items(path, skipped)
            else:
                skipped.append((str(path), reason))
        else:
            skipped.append((str(path), "file not found"))
    return items, skipped


def read_item(item: InputItem) -> tuple[list[CTSlice], list[tuple[str, str]]]:
    """Slices of one input, and the files of a series left out as unreadable (a series loses only those,
    not the whole study; see `read_series`)."""
    if item.slices is not None:
        return list(item.slices), []
    if item.kind != "series":
        return read_slices(item.path), []
    skipped: list[tuple[str, str]] = []
    files = list(item.files) if item.files is not None else None
    return read_series(item.path, skipped, files), skipped
