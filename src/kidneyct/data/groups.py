"""Infer which slices belong to one CT series, from the images themselves.

The Kaggle export has no patient or series identifiers, and neighbouring slices of one scan are
near-copies: a split that ignores this tests on images it trained on. Three kinds of evidence are
joined with union-find (connected components):

1. exact duplicates: identical pixels (after decoding and resizing);
2. near-duplicates: Pearson correlation of 32x32 thumbnails >= NEAR_DUPLICATE (0.97). On the real
   dataset neighbouring slices correlate at 0.995-0.999 (5th-50th percentile) and unrelated slices
   of one class at 0.45-0.69 (median);
3. neighbouring file numbers in one class ("Tumor- (17)" and "Tumor- (18)") whose thumbnails
   correlate >= NEIGHBOUR_LINK (0.90): the numbering follows the scans, but a new series may start
   at any number, so a link needs some similarity too.

Volumes and DICOM series folders already name their series; their slices are always joined.

Series are a property of the data, not of a model's input: they are always inferred (and leakage
audited) on one fixed view of each image, `series_view`, whatever size or body crop a model uses, so
that every model and recipe gets the same groups, splits and cross-validation folds.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from kidneyct.data.catalogue import Sample
from kidneyct.data.splits import relative_path
from kidneyct.preprocess import Preprocessing

NEAR_DUPLICATE = 0.97
NEIGHBOUR_LINK = 0.90
THUMBNAIL = 32
THUMBNAIL_BLOCK = 1024  # images per block when computing thumbnails
_NUMBER = re.compile(r"(\d+)(?!.*\d)")  # the last number in a file name
# The size `kidneyct data groups` has always decoded at; thresholds above were measured on this view.
SERIES_VIEW_SIZE = 128


def series_view(prep: Preprocessing | None = None) -> Preprocessing:
    """The view series are inferred on: whole image (no body crop; cropping zooms each slice differently
    and breaks near-duplicate links), SERIES_VIEW_SIZE px, the input's HU window."""
    window = {} if prep is None else {"window_level": prep.window_level, "window_width": prep.window_width}
    return Preprocessing(image_size=SERIES_VIEW_SIZE, **window)


def decodes_as(prep: Preprocessing, view: Preprocessing) -> bool:
    """True when `prep` decodes to the same cached uint8 images as `view` (standardisation aside)."""
    return prep.cached_form() == view.cached_form()


def thumbnails(images: np.ndarray, side: int = THUMBNAIL) -> np.ndarray:
    """uint8 [N, S, S] -> float32 [N, side*side], zero-mean and unit-norm per image (so that a dot
    product is the Pearson correlation). Box-averages S/side pixel blocks."""
    n, size, _ = images.shape
    factor = max(size // side, 1)
    small = np.empty((n, side * side), np.float32)
    # In blocks: images may be a memory-mapped cache, and a float copy of 12,446 224 px images is 2.5 GB.
    for start in range(0, n, THUMBNAIL_BLOCK):
        block = np.asarray(images[start:start + THUMBNAIL_BLOCK])
        cropped = block[:, : side * factor, : side * factor].astype(np.float32)
        pooled = cropped.reshape(len(block), side, factor, side, factor).mean(axis=(2, 4))
        small[start:start + len(block)] = pooled.reshape(len(block), -1)
    small -= small.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(small, axis=1, keepdims=True)
    return small / np.where(norms > 0, norms, 1.0)


def similar_pairs(vectors: np.ndarray, threshold: float, other: np.ndarray | None = None,
                  block: int = 2048) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (i, j, similarity) with similarity >= threshold, computed block-wise.

    Without `other`, pairs within `vectors` (i < j); with it, pairs between the two sets.
    """
    target = vectors if other is None else other
    rows, cols, values = [], [], []
    for start in range(0, len(vectors), block):
        sims = vectors[start:start + block] @ target.T
        i, j = np.nonzero(sims >= threshold)
        if other is None:
            keep = j > i + start
            i, j = i[keep], j[keep]
        rows.append(i + start)
        cols.append(j)
        values.append(sims[i, j])
    if not rows:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0, np.float32)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(values)


def nearest(query: np.ndarray, reference: np.ndarray, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """For every query vector: index of and similarity to its most similar reference vector."""
    if len(reference) == 0:
        return np.full(len(query), -1), np.full(len(query), -np.inf, np.float32)
    index, best = [], []
    for start in range(0, len(query), block):
        sims = query[start:start + block] @ reference.T
        index.append(sims.argmax(axis=1))
        best.append(sims.max(axis=1))
    return np.concatenate(index), np.concatenate(best)


def _file_number(path: str) -> int | None:
    match = _NUMBER.search(Path(path).stem)
    return int(match.group(1)) if match else None


@dataclass
class Grouping:
    groups: list[str]  # one group id per sample
    exact_duplicates: list[tuple[int, int]]
    near_duplicates: int
    neighbour_links: int
    label_conflicts: list[tuple[int, int, float]]  # near-duplicate pairs with different labels
    threshold: float = NEAR_DUPLICATE
    summary: dict = field(default_factory=dict)


def infer_groups(samples: list[Sample], images: np.ndarray, threshold: float = NEAR_DUPLICATE,
                 neighbour_link: float = NEIGHBOUR_LINK) -> Grouping:
    """Group ids per sample from pixels, near-duplicates, file numbering and known series."""
    n = len(samples)
    vectors = thumbnails(images)
    rows, cols = [], []

    by_hash: dict[bytes, list[int]] = defaultdict(list)
    for index, image in enumerate(images):
        by_hash[hashlib.sha1(image.tobytes()).digest()].append(index)
    exact = [(members[0], other) for members in by_hash.values() for other in members[1:]]
    rows += [a for a, _ in exact]
    cols += [b for _, b in exact]

    i, j, sims = similar_pairs(vectors, threshold)
    rows += i.tolist()
    cols += j.tolist()
    labels = np.array([s.label for s in samples])
    conflicts = [(int(a), int(b), float(s)) for a, b, s in zip(i, j, sims) if labels[a] != labels[b]]

    # Neighbouring numbers within one class folder.
    numbered = defaultdict(list)
    for index, sample in enumerate(samples):
        number = _file_number(sample.path)
        if number is not None and sample.slice_index is None:
            numbered[(sample.label, str(Path(sample.path).parent))].append((number, index))
    links = 0
    for members in numbered.values():
        members.sort()
        for (n1, a), (n2, b) in zip(members, members[1:]):
            if n2 - n1 == 1 and float(vectors[a] @ vectors[b]) >= neighbour_link:
                rows.append(a)
                cols.append(b)
                links += 1

    # Series the file format names (volumes, DICOM folders) are one group whatever the pixels say.
    named = defaultdict(list)
    for index, sample in enumerate(samples):
        if sample.group is not None:
            named[sample.group].append(index)
    for members in named.values():
        rows += members[:-1]
        cols += members[1:]

    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    # Stable, readable ids: numbered by first appearance.
    order: dict[int, str] = {}
    for c in component:
        order.setdefault(int(c), f"s{len(order):05d}")
    groups = [order[int(c)] for c in component]
    grouping = Grouping(groups, exact, int(len(i)), links, conflicts, threshold)
    grouping.summary = summarise(grouping, samples)
    return grouping


def summarise(grouping: Grouping, samples: list[Sample], classes: list[str] | None = None) -> dict:
    members: dict[str, list[int]] = defaultdict(list)
    for index, group in enumerate(grouping.groups):
        members[group].append(index)
    per_class: dict[int, set] = defaultdict(set)
    for group, indices in members.items():
        label = Counter(samples[i].label for i in indices).most_common(1)[0][0]
        per_class[label].add(group)
    sizes = np.array([len(v) for v in members.values()])
    name = (lambda label: classes[label]) if classes else str
    return {
        "images": len(samples), "groups": len(members),
        "groups_per_class": {name(label): len(groups) for label, groups in sorted(per_class.items())},
        "group_size": {"min": int(sizes.min()), "median": float(np.median(sizes)), "max": int(sizes.max()),
                       "singletons": int((sizes == 1).sum())},
        "exact_duplicate_files": len(grouping.exact_duplicates),
        "near_duplicate_pairs": grouping.near_duplicates,
        "neighbour_number_links": grouping.neighbour_links,
        "label_conflicts": len(grouping.label_conflicts),
        "mixed_label_groups": sum(1 for idx in members.values() if len({samples[i].label for i in idx}) > 1),
        "threshold": grouping.threshold,
    }


def write_groups_csv(path: str | Path, root: Path, samples: list[Sample], classes: list[str],
                     grouping: Grouping) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "slice_index", "label", "group"])
        for sample, group in zip(samples, grouping.groups):
            writer.writerow([relative_path(sample.path, Path(root).resolve()),
                             "" if sample.slice_index is None else sample.slice_index,
                             classes[sample.label], group])
