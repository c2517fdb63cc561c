"""Sources: a dataset folder with how its patients are told apart, where its masks lie and its licence.

A run may take several sources (`--data DIR` repeated, or `--sources FILE`); each sample then knows its
source and its patient (group). Three groupings:

- ``series``: series inferred from the pixels (groups.infer_groups), the Kaggle export's only way;
- ``file``: one patient per file (its stem), or the patient a manifest CSV gives for the file (KiTS23);
- ``pattern``: a regular expression on the file name whose first group is the patient
  (Pancreas-CT: ``^(PANCREAS_\\d+)``).

A sources file is TOML, paths relative to the file::

    [[source]]
    name = "kits23"
    data = "../../shared/data/kits23-slices"
    groups = "file"            # series | file | pattern
    manifest = "manifest.csv"  # file only, optional: columns `file` (relative path) and `case_id`
    masks = "masks"            # optional: masks/<image stem>.png beside the class folders
    licence = "CC BY-NC-SA 4.0"
    # pattern = '^(PANCREAS_\\d+)'        (groups = "pattern")
    # classes = { Malignant = "Tumor" }  (optional: folder name -> class name)
"""

from __future__ import annotations

import csv
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from kidneyct.errors import DatasetError

GROUPINGS = ("series", "file", "pattern")
MASK_FOLDER = "masks"  # the mask convention: <source root>/masks/<image stem>.png (docs/sources.md)
SEPARATOR = ":"  # between a source's name and its own group id, when a run has several sources
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_KEYS = {"name", "data", "groups", "pattern", "manifest", "masks", "licence", "license", "classes"}


def relative_path(path: str | Path, root: Path) -> str:
    """`path` relative to `root`, as written in CSVs. Symlinks are not followed: a folder of links to
    images elsewhere (a common way to assemble a dataset) keeps its own layout."""
    return Path(os.path.abspath(path)).relative_to(os.path.abspath(root)).as_posix()


def file_stem(path: str | Path) -> str:
    """The file name without its image suffix ('case_00001.png' -> 'case_00001', 'ct.nii.gz' -> 'ct')."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


@dataclass(frozen=True)
class Source:
    """One dataset folder of a run.

    Args:
        name: how reports and group ids name it (letters, digits, '.', '_', '-').
        root: the folder above its class folders.
        grouping: "series", "file" or "pattern" (see the module docstring).
        pattern: for "pattern": a regex searched in the file name; its first group is the patient.
        manifest: for "file": a CSV (relative to `root`) with columns `file` and `case_id`.
        masks: the folder of its masks (`<stem>.png` or `<stem>.nii.gz`), or None for no masks.
        licence: the data's licence, recorded in checkpoints and reports.
        class_map: (folder name, class name) pairs, both lower case: a folder read as another class.
    """

    name: str
    root: Path
    grouping: str = "series"
    pattern: str | None = None
    manifest: str | None = None
    masks: Path | None = None
    licence: str | None = None
    class_map: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self):
        if not _NAME.match(self.name):
            raise DatasetError(f"source name {self.name!r}: use letters, digits, '.', '_' or '-'")
        if self.grouping not in GROUPINGS:
            raise DatasetError(f"source {self.name}: unknown grouping {self.grouping!r}; choose from {GROUPINGS}")
        if (self.grouping == "pattern") != (self.pattern is not None):
            raise DatasetError(f"source {self.name}: a pattern goes with groups = \"pattern\", and only with it")
        if self.pattern is not None:
            try:
                groups = re.compile(self.pattern).groups
            except re.error as error:
                raise DatasetError(f"source {self.name}: pattern {self.pattern!r} is not a regex ({error})") from None
            if groups < 1:
                raise DatasetError(f"source {self.name}: pattern {self.pattern!r} needs a group (...) for the patient")
        if self.manifest is not None and self.grouping != "file":
            raise DatasetError(f"source {self.name}: a manifest names patients for groups = \"file\" only")

    def folder_class(self, folder: str) -> str:
        """The class a folder of this source is read as (lower case)."""
        return dict(self.class_map).get(folder.lower(), folder.lower())

    def to_dict(self) -> dict:
        return {"name": self.name, "root": str(self.root), "grouping": self.grouping, "pattern": self.pattern,
                "manifest": self.manifest, "masks": None if self.masks is None else str(self.masks),
                "licence": self.licence, "class_map": dict(self.class_map)}

    @classmethod
    def from_dict(cls, values: dict) -> "Source":
        return cls(values["name"], Path(values["root"]), values.get("grouping", "series"), values.get("pattern"),
                   values.get("manifest"), Path(values["masks"]) if values.get("masks") else None,
                   values.get("licence"), tuple(sorted((values.get("class_map") or {}).items())))


def folder_source(data: str | Path) -> Source:
    """A `--data DIR` source: named after its folder, series inferred, masks from DIR/masks when present."""
    root = Path(data).expanduser().resolve()
    masks = root / MASK_FOLDER
    name = re.sub(r"[^A-Za-z0-9._-]", "_", root.name) or "data"
    return Source(name, root, masks=masks if masks.is_dir() else None)


def read_sources_file(path: str | Path) -> list[Source]:
    """The sources a TOML file lists (format in the module docstring); DatasetError naming the file and the
    problem for a missing file, bad TOML, an unknown key or a bad value."""
    path = Path(path).expanduser()
    try:
        document = tomllib.loads(path.read_text())
    except OSError as error:
        raise DatasetError(f"sources file {path}: cannot read it ({error.strerror or error})") from None
    except tomllib.TOMLDecodeError as error:
        raise DatasetError(f"sources file {path}: not valid TOML ({error})") from None
    entries = document.get("source")
    if not isinstance(entries, list) or not entries:
        raise DatasetError(f"sources file {path}: no [[source]] entries")
    return [_entry(entry, path) for entry in entries]


def _entry(entry: dict, path: Path) -> Source:
    unknown = set(entry) - _KEYS
    if unknown:
        raise DatasetError(f"sources file {path}: unknown key(s) {sorted(unknown)} (known: {sorted(_KEYS)})")
    if "name" not in entry or "data" not in entry:
        raise DatasetError(f"sources file {path}: every [[source]] needs a name and a data folder")
    base = path.parent
    root = (base / entry["data"]).expanduser().resolve()
    masks = entry.get("masks")
    classes = entry.get("classes") or {}
    try:
        return Source(str(entry["name"]), root, entry.get("groups", "series"), entry.get("pattern"),
                      entry.get("manifest"), (root / masks).resolve() if masks else None,
                      entry.get("licence", entry.get("license")),
                      tuple(sorted((str(k).lower(), str(v).lower()) for k, v in classes.items())))
    except DatasetError as error:
        raise DatasetError(f"sources file {path}: {error}") from None


def resolve_sources(data: str | list[str] | tuple[str, ...] | None, sources_file: str | None = None) -> list[Source]:
    """The sources of a run: each `--data` folder, then those of the sources file. Names must differ."""
    folders = [data] if isinstance(data, (str, Path)) else list(data or [])
    sources = [folder_source(folder) for folder in folders if str(folder)]
    if sources_file:
        sources += read_sources_file(sources_file)
    if not sources:
        raise DatasetError("no data: give --data DIR (repeatable) or --sources FILE")
    seen: dict[str, Source] = {}
    for source in sources:
        if source.name in seen:
            raise DatasetError(f"two sources are named {source.name!r} ({seen[source.name].root} and {source.root}): "
                               "list them in a --sources file with distinct names")
        seen[source.name] = source
    return sources


def run_sources(checkpoint, data=None, sources_file: str | None = None) -> list[Source]:
    """The sources to evaluate a checkpoint (kidneyct.checkpoint.Checkpoint) on: those given (`data` folders, a
    sources file), else the ones it was trained on (the reading settings of its source records; its data folder
    for checkpoints written before sources existed)."""
    if data or sources_file:
        return resolve_sources(data, sources_file)
    stored = [record.settings for record in checkpoint.sources if record.settings]
    if stored:
        return [Source.from_dict(entry) for entry in stored]
    return [folder_source(checkpoint.data.root)]


def split_roots(sources: list[Source]) -> Path | dict[str, Path]:
    """What split CSVs are written relative to: the one source's folder, or each source's folder by name."""
    return {source.name: source.root for source in sources} if len(sources) > 1 else sources[0].root


def qualified(source: str, group: str, several: bool) -> str:
    """A group id unique across the run: prefixed by its source's name when the run has several sources."""
    return f"{source}{SEPARATOR}{group}" if several else group


class PatientNamer:
    """The patient (group) of a file of a `file` or `pattern` source; None when a pattern does not match."""

    def __init__(self, source: Source):
        self.source = source
        self.regex = re.compile(source.pattern) if source.pattern else None
        self.cases = _manifest_cases(source) if source.manifest else {}

    def __call__(self, path: str | Path) -> str | None:
        if self.regex is not None:
            match = self.regex.search(Path(path).name)
            return match.group(1) if match and match.group(1) else None
        relative = Path(path).resolve().relative_to(self.source.root).as_posix() if self.cases else None
        return self.cases.get(relative) or file_stem(path)


def _manifest_cases(source: Source) -> dict[str, str]:
    path = source.root / source.manifest
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise DatasetError(f"source {source.name}: manifest {path}: {error.strerror or error}") from None
    if rows and not {"file", "case_id"} <= set(rows[0]):
        raise DatasetError(f"source {source.name}: manifest {path} needs the columns 'file' and 'case_id'")
    return {row["file"]: row["case_id"] for row in rows if row["file"] and row["case_id"]}
