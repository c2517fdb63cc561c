"""From dataset folders (sources) to decoded, split arrays: the one data path shared by train and evaluate."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from kidneyct.data.cache import CacheSettings
from kidneyct.data.catalogue import Catalogue, Sample, catalogue_of
from kidneyct.data.decode import DecodedSet, decode_samples, report_mask_problems
from kidneyct.data.groups import Grouping, decodes_as, series_view
from kidneyct.data.patients import assign_groups
from kidneyct.data.rows import Rows
from kidneyct.data.sources import Source, resolve_sources, split_roots
from kidneyct.data.splits import (SPLITS, Roots, SplitFractions, read_split_csv, split_samples,
                                  write_split_csv)
from kidneyct.errors import DatasetError
from kidneyct.preprocess import Preprocessing

log = logging.getLogger(__name__)


@dataclass
class SplitArrays:
    images: Rows  # uint8 [N, S, S], read from the decoded set (a memmap when cached) on demand
    labels: np.ndarray  # int64 [N]
    samples: list[Sample]
    masks: Rows | None = None  # uint8 [N, S, S] like `images`: 0 background, 1 kidney, 2 tumor, 3 cyst, 255 unknown

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def groups(self) -> list[str]:
        return [s.group or s.key for s in self.samples]

    @property
    def sources(self) -> list[str | None]:
        return [s.source for s in self.samples]


@dataclass
class PreparedData:
    catalogue: Catalogue
    decoded: DecodedSet
    splits: dict[str, SplitArrays]
    grouping: Grouping | None = None  # None when the split was read back from a CSV

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return self.catalogue.skipped + self.decoded.skipped

    @property
    def mask_skipped(self) -> list[tuple[str, str]]:
        """(mask file, reason) of every mask refused; their images are used without a mask."""
        return self.decoded.mask_skipped

    @property
    def sources(self) -> list[Source]:
        return self.catalogue.sources

    def sources_summary(self) -> dict[str, dict]:
        """Per source (by name): its settings (Source.to_dict: root, grouping, masks, licence, ...) and what
        this run read from it: images, images per class, images with a mask, groups. Plain JSON data, for
        checkpoints and reports."""
        samples = [s for split in self.splits.values() for s in split.samples] or self.decoded.samples
        out = {}
        for source in self.sources:
            mine = [s for s in samples if s.source == source.name]
            out[source.name] = {**source.to_dict(), "images": len(mine),
                                "classes": {name: sum(s.label == i for s in mine)
                                            for i, name in enumerate(self.catalogue.classes)},
                                "masked": sum(s.mask is not None for s in mine),
                                "groups": len({s.group or s.key for s in mine})}
        return out


def csv_roots(catalogue: Catalogue) -> Roots:
    """What split CSVs are written relative to: the dataset folder, or each source's folder by name."""
    return split_roots(catalogue.sources)


def as_listed(samples: list[Sample], catalogue_samples: list[Sample]) -> list[Sample]:
    """`samples` (read from a split CSV, which knows path, slice, label and group) as the catalogue lists them
    (with source, class folder and mask), keeping the CSV's group; samples the catalogue lacks stay as read."""
    listed = {s.key: s for s in catalogue_samples}
    return [replace(listed[s.key], group=s.group, label=s.label) if s.key in listed else s for s in samples]


def _arrays(decoded: DecodedSet, rows: dict[str, int], samples: list[Sample]) -> SplitArrays:
    index = [rows[s.key] for s in samples if s.key in rows]
    # The decoded sample (source, origin, mask) with the split's group: a split read from a CSV knows less.
    kept = [replace(decoded.samples[rows[s.key]], group=s.group) for s in samples if s.key in rows]
    return SplitArrays(decoded.images.subset(index), np.array([s.label for s in kept], np.int64), kept,
                       decoded.masks.subset(index))


def series_images(decoded: DecodedSet, prep: Preprocessing, workers: int | None = None, progress: bool = True,
                  cache: CacheSettings | None = None, index: list[int] | None = None) -> Rows:
    """`decoded`'s images (those at `index`, default all) in the series view (groups.series_view), row for
    row: the decoded images themselves when the model's input is that view, else a second decode (cached
    like the first)."""
    view = series_view(prep)
    samples = decoded.samples if index is None else [decoded.samples[i] for i in index]
    if decodes_as(prep, view):
        return decoded.images if index is None else decoded.images.subset(index)
    again = decode_samples(samples, view, workers=workers, progress=progress, cache=cache, with_masks=False)
    if [s.key for s in again.samples] != [s.key for s in samples]:
        lost = sorted({s.key for s in samples} - {s.key for s in again.samples})
        raise RuntimeError(f"{len(lost)} image(s) decoded for training failed in the series view: {lost[:5]}")
    return again.images


def report_skipped(skipped: list[tuple[str, str]]) -> None:
    for path, reason in skipped:
        log.warning("skipped %s: %s", path, reason)
    if skipped:
        log.warning("%d unreadable file(s) skipped; the run goes on without them", len(skipped))


SPLIT_KINDS = ("grouped", "random")


def as_sources(data) -> list[Source]:
    """Sources from a folder, a list of folders, or Sources."""
    items = [data] if isinstance(data, (str, Path, Source)) else list(data)
    if items and all(isinstance(item, Source) for item in items):
        return items
    return resolve_sources([str(item) for item in items])


def prepare_data(
    data, classes, prep: Preprocessing, split_csv: str | Path, seed: int = 0,
    fractions: SplitFractions = SplitFractions(), split_kind: str = "grouped", reuse_split: bool = False,
    workers: int | None = None, progress: bool = True, cache: CacheSettings | None = None, jpeg_device=None,
    write_split: bool = True, test_source: str | None = None,
) -> PreparedData:
    """Catalogue, decode once (or load the decode cache), name each sample's patient (series inferred from
    the pixels for series sources), then split (or reuse the split CSV when `reuse_split`; `write_split=False`
    splits without writing the CSV).

    `data` is a dataset folder, a list of them, or a list of Sources. Series are inferred for both split
    kinds, so the split CSV records every image's series and a random split can be audited for leakage;
    only "grouped" keeps each group on one side. With `test_source` that source is the test split and the
    others are split into train and validation.
    """
    if split_kind not in SPLIT_KINDS:
        raise ValueError(f"unknown split kind {split_kind!r}; choose from {SPLIT_KINDS}")
    catalogue = catalogue_of(as_sources(data), classes)
    decoded = decode_samples(catalogue.samples, prep, workers=workers, progress=progress, cache=cache,
                             jpeg_device=jpeg_device)
    report_skipped(catalogue.skipped + decoded.skipped)
    if decoded.from_cache:  # decoding reported them when it ran
        report_mask_problems(decoded.mask_skipped)
    if len(decoded.samples) == 0:
        raise ValueError(f"no readable images under {catalogue.root}")
    rows = {s.key: i for i, s in enumerate(decoded.samples)}
    grouping = None
    if reuse_split:
        by_split = read_split_csv(split_csv, csv_roots(catalogue), catalogue.classes)
    else:
        grouping = assign_groups(decoded.samples, catalogue.sources, lambda index: series_images(
            decoded, prep, workers=workers, progress=progress, cache=cache,
            index=None if len(index) == len(decoded.samples) else index))
        log.info("%d groups (series or patients) among %d images (%s)", grouping.summary["groups"],
                 len(decoded.samples), ", ".join(f"{catalogue.classes[int(k)]}: {v}"
                                                 for k, v in grouping.summary["groups_per_class"].items()))
        samples = [replace(s, group=g) for s, g in zip(decoded.samples, grouping.groups)]
        split_by = grouping.groups if split_kind == "grouped" else [s.key for s in samples]
        by_split = _split(samples, fractions, seed, split_by, test_source)
        if write_split:
            write_split_csv(split_csv, csv_roots(catalogue), catalogue.classes, by_split)
    splits = {name: _arrays(decoded, rows, by_split.get(name, [])) for name in SPLITS}
    return PreparedData(catalogue, decoded, splits, grouping)


def _split(samples: list[Sample], fractions: SplitFractions, seed: int, split_by: list[str],
           test_source: str | None) -> dict[str, list[Sample]]:
    """The grouped, stratified split; with `test_source`, that source is the test split and the others are
    dealt to train and validation in the ratio of `fractions`."""
    if test_source is None:
        return split_samples(samples, fractions, seed, split_by)
    names = sorted({s.source for s in samples})
    if test_source not in names or len(names) < 2:
        raise DatasetError(f"test source {test_source!r} must be one of several sources; the run has {names}")
    rest = [i for i, s in enumerate(samples) if s.source != test_source]
    val = fractions.val / (fractions.train + fractions.val)
    out = split_samples([samples[i] for i in rest], SplitFractions(1.0 - val, val, 0.0), seed,
                        [split_by[i] for i in rest])
    out["test"] = [replace(s, group=g) for s, g in zip(samples, split_by) if s.source == test_source]
    return out
