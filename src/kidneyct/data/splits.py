"""Stratified train/val/test splits that never put one group on two sides.

Every sample belongs to a group; with no grouping each image is its own group (an image-level split).
Groups are dealt per class, largest first, each to the split furthest below its target, so split sizes
come as close to the requested fractions as the groups allow. Deterministic for a given seed.
"""

from __future__ import annotations

import csv
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from kidneyct.data.catalogue import Sample
from kidneyct.data.sources import relative_path

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitFractions:
    train: float = 0.7
    val: float = 0.15
    test: float = 0.15

    def __post_init__(self):
        values = (self.train, self.val, self.test)
        if min(values) < 0 or abs(sum(values) - 1.0) > 1e-6:
            raise ValueError(f"split fractions must be non-negative and sum to 1, got {values}")

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.train, self.val, self.test)


def group_ids(samples: list[Sample]) -> list[str]:
    """Each sample's group: the one it carries (volume, series), else the image itself."""
    return [s.group if s.group is not None else s.key for s in samples]


def grouped_stratified_split(
    labels: list[int], groups: list[str], fractions: SplitFractions = SplitFractions(), seed: int = 0
) -> list[str]:
    """Split name per sample; no group is split across train/val/test."""
    if len(labels) != len(groups):
        raise ValueError("labels and groups differ in length")
    rng = np.random.default_rng(seed)
    members: dict[str, list[int]] = defaultdict(list)
    for index, group in enumerate(groups):
        members[group].append(index)
    # A group follows its majority label; mixed groups are rare (label conflicts between near-copies).
    by_class: dict[int, list[str]] = defaultdict(list)
    for group, indices in members.items():
        label = Counter(labels[i] for i in indices).most_common(1)[0][0]
        by_class[label].append(group)
    assignment: dict[str, str] = {}
    for label in sorted(by_class):
        class_groups = by_class[label]
        order = rng.permutation(len(class_groups))
        # Largest groups first packs closest to the targets; the permutation breaks ties by seed.
        ordered = sorted((class_groups[i] for i in order), key=lambda g: -len(members[g]))
        total = sum(len(members[g]) for g in ordered)
        targets = np.array(fractions.as_tuple()) * total
        filled = np.zeros(3)
        for group in ordered:
            choice = int(np.argmax(targets - filled))
            assignment[group] = SPLITS[choice]
            filled[choice] += len(members[group])
    return [assignment[g] for g in groups]


def split_strata(samples: list[Sample]) -> list:
    """What train/val/test splits stratify by: the class, and with samples of several sources the source with
    it ("kits23:0"), so that each source's classes are spread like the whole run's."""
    if len({s.source for s in samples}) < 2:
        return [s.label for s in samples]
    return [f"{s.source}:{s.label}" for s in samples]


def fold_strata(samples: list[Sample]) -> list[str]:
    """What cross-validation folds are dealt by: the class folder (see grouped_stratified_folds), and with
    samples of several sources the source with it ("kits23:Tumor")."""
    several = len({s.source for s in samples}) > 1
    return [f"{s.source}:{s.origin or s.label}" if several else s.origin or str(s.label) for s in samples]


def split_samples(
    samples: list[Sample], fractions: SplitFractions = SplitFractions(), seed: int = 0,
    groups: list[str] | None = None,
) -> dict[str, list[Sample]]:
    """Samples per split. `groups` decides what stays together (default: each sample's own group);
    the samples keep the group they carry, which the split CSV records. Stratified by `split_strata`."""
    groups = group_ids(samples) if groups is None else groups
    names = grouped_stratified_split(split_strata(samples), groups, fractions, seed)
    out: dict[str, list[Sample]] = {name: [] for name in SPLITS}
    for sample, group, name in zip(samples, group_ids(samples), names):
        out[name].append(replace(sample, group=group))
    return out


Roots = Path | dict[str, Path]  # one dataset folder, or each source's folder by name


def write_split_csv(path: str | Path, root: Roots, classes: list[str], splits: dict[str, list[Sample]]) -> None:
    """One row per sample: path (relative to its root), slice, class, group, split; with several sources
    (`root` a dict) also each sample's source, whose folder its path is relative to."""
    several = isinstance(root, dict)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "slice_index", "label", "group", "split"] + (["source"] if several else []))
        for name in SPLITS:
            for s in splits.get(name, []):
                base = Path(root[s.source] if several else root)
                group = s.group or s.key
                writer.writerow([relative_path(s.path, base), "" if s.slice_index is None else s.slice_index,
                                 classes[s.label], _relative_if_inside(group, base), name]
                                + ([s.source] if several else []))


def _relative_if_inside(value: str, root: Path) -> str:
    try:
        return relative_path(value, root)
    except (ValueError, OSError):
        return value


def _row_root(row: dict, roots: Roots, path: str | Path) -> tuple[Path, str | None]:
    if not isinstance(roots, dict):
        return Path(roots).expanduser().resolve(), row.get("source") or None
    source = row.get("source") or (next(iter(roots)) if len(roots) == 1 else None)
    if source not in roots:
        raise ValueError(f"{path}: row for {row['path']} names source {source!r}, not one of {sorted(roots)}")
    return Path(roots[source]).expanduser().resolve(), source


def read_split_csv(path: str | Path, root: Roots, classes: list[str]) -> dict[str, list[Sample]]:
    """Samples per split, paths resolved against `root` (which may differ from where training ran), or
    against each row's source's folder when `root` maps source names to folders."""
    index = {name.lower(): i for i, name in enumerate(classes)}
    out: dict[str, list[Sample]] = {name: [] for name in SPLITS}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            label = row["label"].lower()
            if label not in index:
                raise ValueError(f"{path}: label {row['label']!r} is not one of the model's classes {classes}")
            slice_index = int(row["slice_index"]) if row["slice_index"] != "" else None
            base, source = _row_root(row, root, path)
            out[row["split"]].append(
                Sample(str(base / row["path"]), index[label], slice_index, group=row["group"], source=source)
            )
    return out


def grouped_stratified_folds(strata: list, groups: list[str], folds: int, seed: int = 0) -> list[int]:
    """Fold index (0..folds-1) per sample for k-fold cross-validation; no group in two folds.

    Groups are dealt per stratum (a class label, or the class folder a sample came from), each stratum on
    its own: a group follows its majority stratum; largest groups first (ties in an order seeded by the
    seed and the stratum's name), each to the fold with the fewest images of that stratum so far (ties
    between folds in a seeded order). Because no stratum's dealing looks at another's, the Tumor and
    Normal series land in the same folds whether or not Cyst and Stone are in the run, so recipes trained
    on different class sets are tested on the same patients.
    """
    if len(strata) != len(groups):
        raise ValueError("strata and groups differ in length")
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    members: dict[str, list[int]] = defaultdict(list)
    for index, group in enumerate(groups):
        members[group].append(index)
    if len(members) < folds:
        raise ValueError(f"{len(members)} series cannot fill {folds} folds")
    by_stratum: dict[str, list[str]] = defaultdict(list)
    for group, indices in members.items():
        by_stratum[str(Counter(strata[i] for i in indices).most_common(1)[0][0])].append(group)
    assignment: dict[str, int] = {}
    for stratum, stratum_groups in sorted(by_stratum.items()):
        rng = np.random.default_rng([seed, zlib.crc32(stratum.encode())])
        shuffled = [g for g in np.array(sorted(stratum_groups))[rng.permutation(len(stratum_groups))]]
        ordered = sorted(shuffled, key=lambda g: -len(members[g]))  # stable: the shuffle breaks size ties
        fold_order = rng.permutation(folds)
        filled = np.zeros(folds)
        for group in ordered:
            candidates = [f for f in fold_order if filled[f] == filled.min()]
            assignment[group] = int(candidates[0])
            filled[candidates[0]] += len(members[group])
            fold_order = np.r_[fold_order[fold_order != candidates[0]], candidates[0]]  # rotate ties around
    return [assignment[g] for g in groups]
