"""Find the class folders under a dataset root and list one Sample per slice."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from kidneyct.errors import DatasetError, ImageReadError
from kidneyct.io import count_slices, file_kind, walk_folders

KAGGLE_CLASSES = ("Normal", "Cyst", "Tumor", "Stone")
DEFAULT_CLASSES = ("Tumor", "Normal")


@dataclass(frozen=True)
class Sample:
    path: str  # absolute
    label: int
    slice_index: int | None = None  # for volumes: which axial slice
    group: str | None = None  # series identity when the format tells it (volume, DICOM folder)

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
    """'tumor,normal' -> ['tumor', 'normal']; 'all' -> the four Kaggle classes."""
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


def build_catalogue(root: str | Path, classes=None) -> Catalogue:
    """Samples for the requested classes. Volumes count once per axial slice.

    Raises DatasetError for a missing root, an empty folder, a missing or ambiguous class folder, or
    a class folder without images. Unreadable volume headers are skipped and listed.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist or is not a folder")
    if not any(root.iterdir()):
        raise DatasetError(f"dataset folder {root} is empty")
    wanted = parse_classes(classes)
    dirs = _find_class_dirs(root, wanted)
    class_dirs = [dirs[name][0] for name in wanted]
    display_names = [d.name for d in class_dirs]
    samples: list[Sample] = []
    skipped: list[tuple[str, str]] = []
    for label, folder in enumerate(class_dirs):
        files = _image_files(folder)
        if not files:
            raise DatasetError(f"class folder {folder} holds no JPG, PNG, DICOM or NIfTI files")
        for path in files:
            kind = file_kind(path)
            if kind == "nifti":
                try:
                    depth = count_slices(path)
                except ImageReadError as error:
                    skipped.append((str(path), error.reason))
                    continue
                samples.extend(Sample(str(path), label, i, group=str(path)) for i in range(depth))
            elif kind == "dicom":
                samples.append(Sample(str(path), label, None, group=str(path.parent)))
            else:
                samples.append(Sample(str(path), label))
    return Catalogue(root=root, classes=display_names, class_dirs=class_dirs, samples=samples, skipped=skipped)
