from collections import Counter

import numpy as np
import pytest

from kidneyct.data.catalogue import Sample
from kidneyct.data.splits import (SplitFractions, grouped_stratified_split, read_split_csv, split_samples,
                                  write_split_csv)


def test_image_level_split_is_stratified_and_deterministic():
    labels = [0] * 300 + [1] * 100
    groups = [str(i) for i in range(400)]
    first = grouped_stratified_split(labels, groups, SplitFractions(0.7, 0.15, 0.15), seed=5)
    assert first == grouped_stratified_split(labels, groups, SplitFractions(0.7, 0.15, 0.15), seed=5)
    assert first != grouped_stratified_split(labels, groups, SplitFractions(0.7, 0.15, 0.15), seed=6)
    counts = Counter(zip(labels, first))
    assert counts[(0, "train")] == 210 and counts[(0, "val")] == 45 and counts[(0, "test")] == 45
    assert counts[(1, "train")] == 70 and counts[(1, "val")] == 15 and counts[(1, "test")] == 15


def test_groups_never_cross_splits_and_sizes_stay_close():
    rng = np.random.default_rng(0)
    labels, groups = [], []
    for g in range(120):
        size = int(rng.integers(1, 12))
        labels += [g % 2] * size
        groups += [f"series{g}"] * size
    names = grouped_stratified_split(labels, groups, seed=1)
    sides = {}
    for group, name in zip(groups, names):
        sides.setdefault(group, set()).add(name)
    assert all(len(s) == 1 for s in sides.values())
    shares = Counter(names)
    assert abs(shares["train"] / len(names) - 0.7) < 0.05
    assert abs(shares["test"] / len(names) - 0.15) < 0.05


def test_fractions_must_sum_to_one():
    with pytest.raises(ValueError, match="sum to 1"):
        SplitFractions(0.8, 0.15, 0.15)


def test_split_csv_round_trip_relocates_the_root(tmp_path):
    root = tmp_path / "data"
    samples = [Sample(str(root / "Tumor" / f"{i}.png"), 0) for i in range(10)]
    samples += [Sample(str(root / "vol.nii.gz"), 1, i, group=str(root / "vol.nii.gz")) for i in range(5)]
    splits = split_samples(samples, seed=0)
    write_split_csv(tmp_path / "split.csv", root, ["Tumor", "Normal"], splits)
    moved = read_split_csv(tmp_path / "split.csv", tmp_path / "elsewhere", ["tumor", "normal"])
    assert sum(len(v) for v in moved.values()) == 15
    volume_rows = [s for v in moved.values() for s in v if s.slice_index is not None]
    assert len(volume_rows) == 5 and len({s.group for s in volume_rows}) == 1
    assert all(s.path.startswith(str(tmp_path / "elsewhere")) for v in moved.values() for s in v)


def test_a_dataset_of_symlinks_keeps_its_own_layout_in_split_and_group_csvs(phantom_png, tmp_path):
    import os

    from kidneyct.cli import main

    linked = tmp_path / "linked"
    for image in phantom_png.rglob("*.png"):
        if ".mask." in image.name:
            continue
        target = linked / image.parent.name / image.name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(image, target)
    assert main(["data", "groups", str(linked), "--out", str(tmp_path / "groups.csv"), "--workers", "1"]) == 0
    rows = (tmp_path / "groups.csv").read_text().splitlines()[1:]
    assert rows and all(not row.startswith(("/", "..")) for row in rows)
    assert {row.split(",")[0] for row in rows} == {p.relative_to(linked).as_posix() for p in linked.rglob("*.png")}


def test_folds_of_one_class_do_not_depend_on_the_other_classes():
    from kidneyct.data.splits import grouped_stratified_folds

    rng = np.random.default_rng(3)
    groups, strata = [], []
    for g in range(60):
        strata += [["Tumor", "Normal", "Cyst"][g % 3]] * int(rng.integers(1, 8))
        groups += [f"g{g}"] * (len(strata) - len(groups))
    full = grouped_stratified_folds(strata, groups, 5, seed=2)
    keep = [i for i, s in enumerate(strata) if s != "Cyst"]
    without_cyst = grouped_stratified_folds([strata[i] for i in keep], [groups[i] for i in keep], 5, seed=2)
    assert [full[i] for i in keep] == without_cyst
    assert grouped_stratified_folds(strata, groups, 5, seed=3) != full  # another seed, other folds
