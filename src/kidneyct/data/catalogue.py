"""Find the class folders under a dataset root and list one Sample per slice."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from kidneyct.errors import DatasetError, ImageReadError
from kidneyct.io import count_slices, file_kind, walk_folders
from kidneyct.labels import KAGGLE_CLASSES

DEFAULT_CLASSES = ("Tumor", "Normal")
REST = "rest"  # in a class list: every Kaggle class folder not named otherwise, as one class
REST_NAME = "Other"
MERGE = "+"  # 'normal+cyst': two folders read as one class


@dataclass(frozen=True)
class Sample:
    path: str  # absolute
    label: int
    slice_index: int | None = None  # for volumes: which axial slice
    group: str | None = None  # series identity when the format tells it (volume, DICOM folder)
    origin: str | None = None  # the class folder it came from (differs from the label's name in merged classes)

    @property
    def key(self) -> str:
        return self.path if self.slice_index is None else f"{self.path}#{self.slice_index}"


@dataclass
class Catalogue:
    root: Path
    classes: list[str]
    class_dirs: list[Path]
    samples: list[Sample]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def labels(self) -> list[int]:
        return [s.label for s in self.samples]

    def counts(self) -> dict[str, int]:
        counts = {name: 0 for name in self.classes}
        for sample in self.samples:
            counts[self.classes[sample.label]] += 1
        return counts


def parse_classes(spec: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """'tumor,normal' -> ['tumor', 'normal']; 'all' -> the four Kaggle classes; merged classes stay one
    entry ('tumor,normal+cyst' -> ['tumor', 'normal+cyst'], 'tumor,rest' -> ['tumor', 'rest'])."""
    if spec is None:
        return [c.lower() for c in DEFAULT_CLASSES]
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [n.strip().lower() for n in names if n.strip()]
    if names == ["all"]:
        return [c.lower() for c in KAGGLE_CLASSES]
    if len(names) < 2:
        raise DatasetError(f"need at least two classes, got {names!r}")
    if len(set(names)) != len(names):
        raise DatasetError(f"a class is listed twice in {spec!r}")
    return names


def _find_class_dirs(root: Path, wanted: list[str]) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {name: [] for name in wanted}
    everything: set[str] = set()
    for current, dirs, _ in os.walk(root):
        dirs.sort()
        for d in dirs:
            everything.add(d)
            if d.lower() in found:
                found[d.lower()].append(Path(current) / d)
    missing = [name for name, paths in found.items() if not paths]
    if missing:
        candidates = sorted(everything, key=str.lower)
        shown = ", ".join(candidates[:20]) or "none"
        raise DatasetError(
            f"class folder(s) {', '.join(missing)} not found under {root} "
            f"(folders seen: {shown}; class names are matched case-insensitively)"
        )
    for name, paths in found.items():
        if len(paths) > 1:
            raise DatasetError(
                f"class '{name}' matches {len(paths)} folders under {root}: "
                + ", ".join(str(p) for p in paths[:5])
                + "; point --data at the folder that holds just one set of class folders"
            )
    return found


def _image_files(folder: Path) -> list[Path]:
    return [path for _, files in walk_folders(folder) for path in files if file_kind(path) is not None]


def _folder_names(root: Path) -> set[str]:
    return {d.lower() for _, dirs, _ in os.walk(root) for d in dirs}


def _class_folders(wanted: list[str], root: Path) -> list[list[str]]:
    """The folder names behind each requested class: 'normal+cyst' -> ['normal', 'cyst']; 'rest' -> every
    Kaggle class folder under `root` that no other entry names."""
    named = {part for name in wanted if name != REST for part in name.split(MERGE)}
    folders = [[REST] if name == REST else [p for p in name.split(MERGE) if p] for name in wanted]
    present = _folder_names(root) if REST in wanted else set()
    rest = [c.lower() for c in KAGGLE_CLASSES if c.lower() not in named and c.lower() in present]
    if any(f == [REST] for f in folders) and not rest:
        raise DatasetError(f"'{REST}' names no class: every Kaggle class is already listed in {wanted}")
    return [rest if f == [REST] else f for f in folders]


def _samples_in(folder: Path, label: int, skipped: list[tuple[str, str]]) -> list[Sample]:
    files = _image_files(folder)
    if not files:
        raise DatasetError(f"class folder {folder} holds no JPG, PNG, DICOM or NIfTI files")
    samples = []
    for path in files:
        kind = file_kind(path)
        if kind == "nifti":
            try:
                depth = count_slices(path)
            except ImageReadError as error:
                skipped.append((str(path), error.reason))
                continue
            samples.extend(Sample(str(path), label, i, group=str(path), origin=folder.name) for i in range(depth))
        elif kind == "dicom":
            samples.append(Sample(str(path), label, None, group=str(path.parent), origin=folder.name))
        else:
            samples.append(Sample(str(path), label, origin=folder.name))
    return samples


def build_catalogue(root: str | Path, classes=None) -> Catalogue:
    """Samples for the requested classes. Volumes count once per axial slice. A merged class
    ('normal+cyst', or 'rest' for every Kaggle class not listed) reads several folders under one label;
    each sample keeps its folder's name as `origin`.

    Raises DatasetError for a missing root, an empty folder, a missing or ambiguous class folder, or
    a class folder without images. Unreadable volume headers are skipped and listed.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist or is not a folder")
    if not any(root.iterdir()):
        raise DatasetError(f"dataset folder {root} is empty")
    wanted = parse_classes(classes)
    folders = _class_folders(wanted, root)
    dirs = _find_class_dirs(root, [name for group in folders for name in group])
    class_dirs = [dirs[name][0] for group in folders for name in group]
    display_names = [REST_NAME if name == REST else MERGE.join(dirs[f][0].name for f in group)
                     for name, group in zip(wanted, folders)]
    samples: list[Sample] = []
    skipped: list[tuple[str, str]] = []
    for label, group in enumerate(folders):
        for name in group:
            samples += _samples_in(dirs[name][0], label, skipped)
    return Catalogue(root=root, classes=display_names, class_dirs=class_dirs, samples=samples, skipped=skipped)
