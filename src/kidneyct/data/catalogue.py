"""Find the class folders under each source's root and list one Sample per slice, with its source, its patient
(for `file` and `pattern` sources) and its mask file (for sources with masks)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from kidneyct.data.sources import PatientNamer, Source, file_stem, folder_source, qualified, relative_path
from kidneyct.errors import DatasetError, ImageReadError
from kidneyct.io import count_slices, file_format, file_kind, walk_folders
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
    source: str | None = None  # the name of the source it came from
    mask: str | None = None  # its mask file (masks/<stem>.png or .nii.gz), None where the source has none

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
    sources: list[Source] = field(default_factory=list)

    @property
    def several(self) -> bool:
        """True when the run has more than one source (group ids and strata then carry the source)."""
        return len(self.sources) > 1

    def roots(self) -> dict[str, Path]:
        return {source.name: source.root for source in self.sources}

    def relative_key(self, sample: Sample) -> str:
        """The sample's path under its source's root (with '#slice' for volumes), prefixed by the source's name
        when the run has several: a name that does not depend on where the data lie."""
        root = self.roots().get(sample.source, self.root)
        key = relative_path(sample.path, root) + ("" if sample.slice_index is None else f"#{sample.slice_index}")
        return qualified(sample.source, key, True) if self.several else key

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


def _find_class_dirs(root: Path, wanted: list[str], source: Source, allow_missing: bool = False
                     ) -> dict[str, list[Path]]:
    """The folders under `root` read as each wanted class (its mask folder left out); a class without a folder
    is an error unless `allow_missing` (a source of a multi-source run may lack classes)."""
    found: dict[str, list[Path]] = {name: [] for name in wanted}
    everything: set[str] = set()
    for current, dirs, _ in os.walk(root):
        dirs[:] = sorted(d for d in dirs if source.masks is None or Path(current) / d != source.masks)
        for d in dirs:
            everything.add(d)
            if source.folder_class(d) in found:
                found[source.folder_class(d)].append(Path(current) / d)
    missing = [name for name, paths in found.items() if not paths]
    if missing and not allow_missing:
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
    return {name: paths for name, paths in found.items() if paths}


def _image_files(folder: Path) -> list[Path]:
    return [path for _, files in walk_folders(folder) for path in files if file_kind(path) is not None]


def _folder_names(root: Path, source: Source) -> set[str]:
    return {source.folder_class(d) for _, dirs, _ in os.walk(root) for d in dirs}


def _class_folders(wanted: list[str], source: Source, allow_missing: bool = False) -> list[list[str]]:
    """The folder names behind each requested class: 'normal+cyst' -> ['normal', 'cyst']; 'rest' -> every
    Kaggle class folder of the source that no other entry names."""
    named = {part for name in wanted if name != REST for part in name.split(MERGE)}
    folders = [[REST] if name == REST else [p for p in name.split(MERGE) if p] for name in wanted]
    present = _folder_names(source.root, source) if REST in wanted else set()
    rest = [c.lower() for c in KAGGLE_CLASSES if c.lower() not in named and c.lower() in present]
    if any(f == [REST] for f in folders) and not rest and not allow_missing:
        raise DatasetError(f"'{REST}' names no class: every Kaggle class is already listed in {wanted}")
    return [rest if f == [REST] else f for f in folders]


def _mask_files(source: Source) -> dict[str, str]:
    """Image stem -> mask file in the source's mask folder (PNG first, then NIfTI)."""
    if source.masks is None:
        return {}
    if not source.masks.is_dir():
        raise DatasetError(f"source {source.name}: mask folder {source.masks} does not exist")
    found: dict[str, str] = {}
    for path in sorted(source.masks.iterdir(), key=lambda p: (not p.name.lower().endswith(".png"), p.name)):
        if path.is_file() and not path.name.startswith(".") and file_format(path) in ("png", "nifti"):
            found.setdefault(file_stem(path), str(path))
    return found


@dataclass
class _Reader:
    """What listing one source's class folders needs besides the folder: patients, masks, the skip list."""

    source: Source
    several: bool
    skipped: list[tuple[str, str]]
    namer: PatientNamer | None = None
    masks: dict[str, str] = field(default_factory=dict)

    def sample(self, path: Path, label: int, folder: Path, index: int | None = None,
               series: str | None = None) -> Sample | None:
        group = series
        if self.namer is not None:
            patient = self.namer(path if series is None or index is not None else path.parent)
            if patient is None:
                self.skipped.append((str(path), f"file name does not match source {self.source.name}'s pattern "
                                                f"{self.source.pattern!r}"))
                return None
            group = qualified(self.source.name, patient, self.several)
        return Sample(str(path), label, index, group=group, origin=folder.name, source=self.source.name,
                      mask=self.masks.get(file_stem(path)))


def _samples_in(folder: Path, label: int, reader: _Reader) -> list[Sample]:
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
                reader.skipped.append((str(path), error.reason))
                continue
            samples += [reader.sample(path, label, folder, i, series=str(path)) for i in range(depth)]
        elif kind == "dicom":
            samples.append(reader.sample(path, label, folder, series=str(path.parent)))
        else:
            samples.append(reader.sample(path, label, folder))
    return [s for s in samples if s is not None]


def _checked_root(root: str | Path) -> Path:
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist or is not a folder")
    if not any(root.iterdir()):
        raise DatasetError(f"dataset folder {root} is empty")
    return root


def build_catalogue(root: str | Path, classes=None) -> Catalogue:
    """Samples for the requested classes of one dataset folder (a `--data DIR` source: named after the
    folder, series inferred later, masks from DIR/masks when that folder exists). Volumes count once per
    axial slice. A merged class ('normal+cyst', or 'rest' for every Kaggle class not listed) reads several
    folders under one label; each sample keeps its folder's name as `origin`.

    Raises DatasetError for a missing root, an empty folder, a missing or ambiguous class folder, or
    a class folder without images. Unreadable volume headers are skipped and listed.
    """
    return catalogue_of([folder_source(_checked_root(root))], classes)


@dataclass
class _Part:
    """One source's share of a catalogue."""

    samples: list[Sample]
    class_dirs: list[Path]
    names: dict[str, tuple[int, str]]  # requested class -> (folders found, display name)


def _source_part(source: Source, wanted: list[str], several: bool, skipped: list[tuple[str, str]]) -> _Part:
    folders = _class_folders(wanted, source, allow_missing=several)
    dirs = _find_class_dirs(source.root, [name for group in folders for name in group], source, several)
    reader = _Reader(source, several, skipped, PatientNamer(source) if source.grouping != "series" else None,
                     _mask_files(source))
    part = _Part([], [], {})
    for label, (name, group) in enumerate(zip(wanted, folders)):
        present = [f for f in group if f in dirs]
        if not present:
            continue
        part.names[name] = (len(present), REST_NAME if name == REST else MERGE.join(dirs[f][0].name for f in present))
        for folder in present:
            part.class_dirs.append(dirs[folder][0])
            part.samples += _samples_in(dirs[folder][0], label, reader)
    return part


def catalogue_of(sources: list[Source], classes=None) -> Catalogue:
    """Samples of the requested classes from every source, labelled alike. A source may lack some classes
    (Pancreas-CT has only Normal) as long as another one has them; with several sources, `file` and
    `pattern` patients are prefixed by the source's name so that no two sources share a group."""
    if not sources:
        raise DatasetError("no sources to read")
    wanted = parse_classes(classes)
    several = len(sources) > 1
    skipped: list[tuple[str, str]] = []
    parts = [_source_part(source, wanted, several, skipped) for source in sources
             if _checked_root(source.root)]
    missing = [name for name in wanted if not any(name in part.names for part in parts)]
    if missing:
        raise DatasetError(f"class folder(s) {', '.join(missing)} not found in any source "
                           f"({', '.join(f'{s.name}: {s.root}' for s in sources)})")
    names = [max((part.names[name] for part in parts if name in part.names), key=lambda found: found[0])[1]
             for name in wanted]
    root = sources[0].root if not several else Path(os.path.commonpath([str(s.root) for s in sources]))
    return Catalogue(root=root, classes=names, class_dirs=[d for part in parts for d in part.class_dirs],
                     samples=[s for part in parts for s in part.samples], skipped=skipped, sources=list(sources))
