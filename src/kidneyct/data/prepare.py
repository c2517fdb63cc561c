"""From a dataset folder to decoded, split arrays: the one data path shared by train and evaluate."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from kidneyct.data.cache import CacheSettings
from kidneyct.data.catalogue import Catalogue, Sample, build_catalogue
from kidneyct.data.decode import DecodedSet, decode_samples
from kidneyct.data.groups import Grouping, decodes_as, infer_groups, series_view
from kidneyct.data.rows import Rows
from kidneyct.data.splits import SPLITS, SplitFractions, read_split_csv, split_samples, write_split_csv
from kidneyct.preprocess import Preprocessing

log = logging.getLogger(__name__)


@dataclass
class SplitArrays:
    images: Rows  # uint8 [N, S, S], read from the decoded set (a memmap when cached) on demand
    labels: np.ndarray  # int64 [N]
    samples: list[Sample]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def groups(self) -> list[str]:
        return [s.group or s.key for s in self.samples]


@dataclass
class PreparedData:
    catalogue: Catalogue
    decoded: DecodedSet
    splits: dict[str, SplitArrays]
    grouping: Grouping | None = None  # None when the split was read back from a CSV

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return self.catalogue.skipped + self.decoded.skipped


def _arrays(decoded: DecodedSet, rows: dict[str, int], samples: list[Sample]) -> SplitArrays:
    index = [rows[s.key] for s in samples if s.key in rows]
    kept = [s for s in samples if s.key in rows]
    return SplitArrays(decoded.images.subset(index), np.array([s.label for s in kept], np.int64), kept)


def series_images(decoded: DecodedSet, prep: Preprocessing, workers: int | None = None, progress: bool = True,
                  cache: CacheSettings | None = None) -> Rows:
    """`decoded`'s images in the series view (groups.series_view), row for row: the decoded images
    themselves when the model's input is that view, else a second decode (cached like the first)."""
    view = series_view(prep)
    if decodes_as(prep, view):
        return decoded.images
    again = decode_samples(decoded.samples, view, workers=workers, progress=progress, cache=cache)
    if [s.key for s in again.samples] != [s.key for s in decoded.samples]:
        lost = sorted({s.key for s in decoded.samples} - {s.key for s in again.samples})
        raise RuntimeError(f"{len(lost)} image(s) decoded for training failed in the series view: {lost[:5]}")
    return again.images


def report_skipped(skipped: list[tuple[str, str]]) -> None:
    for path, reason in skipped:
        log.warning("skipped %s: %s", path, reason)
    if skipped:
        log.warning("%d unreadable file(s) skipped; the run goes on without them", len(skipped))


SPLIT_KINDS = ("grouped", "random")


def prepare_data(
    data: str | Path, classes, prep: Preprocessing, split_csv: str | Path, seed: int = 0,
    fractions: SplitFractions = SplitFractions(), split_kind: str = "grouped", reuse_split: bool = False,
    workers: int | None = None, progress: bool = True, cache: CacheSettings | None = None, jpeg_device=None,
    write_split: bool = True,
) -> PreparedData:
    """Catalogue, decode once (or load the decode cache), infer series, then split (or reuse the split
    CSV when `reuse_split`; `write_split=False` splits without writing the CSV).

    Series are inferred for both split kinds, so the split CSV records every image's series and a
    random split can be audited for leakage; only "grouped" keeps each series on one side.
    """
    if split_kind not in SPLIT_KINDS:
        raise ValueError(f"unknown split kind {split_kind!r}; choose from {SPLIT_KINDS}")
    catalogue = build_catalogue(data, classes)
    decoded = decode_samples(catalogue.samples, prep, workers=workers, progress=progress, cache=cache,
                             jpeg_device=jpeg_device)
    report_skipped(catalogue.skipped + decoded.skipped)
    if len(decoded.samples) == 0:
        raise ValueError(f"no readable images under {catalogue.root}")
    rows = {s.key: i for i, s in enumerate(decoded.samples)}
    grouping = None
    if reuse_split:
        by_split = read_split_csv(split_csv, catalogue.root, catalogue.classes)
    else:
        view = series_images(decoded, prep, workers=workers, progress=progress, cache=cache)
        grouping = infer_groups(decoded.samples, view)
        log.info("inferred %d series among %d images (%s)", grouping.summary["groups"], len(decoded.samples),
                 ", ".join(f"{catalogue.classes[int(k)]}: {v}"
                           for k, v in grouping.summary["groups_per_class"].items()))
        samples = [replace(s, group=g) for s, g in zip(decoded.samples, grouping.groups)]
        split_by = grouping.groups if split_kind == "grouped" else [s.key for s in samples]
        by_split = split_samples(samples, fractions, seed, split_by)
        if write_split:
            write_split_csv(split_csv, catalogue.root, catalogue.classes, by_split)
    splits = {name: _arrays(decoded, rows, by_split.get(name, [])) for name in SPLITS}
    return PreparedData(catalogue, decoded, splits, grouping)
