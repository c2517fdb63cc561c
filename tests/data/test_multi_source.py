"""Several sources in one run: patients grouped within each source, splits and folds that never split a
patient and are stratified by source and class, a held-out test source, the split CSV and the summary."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import pytest

from kidneyct.data.cache import CacheSettings
from kidneyct.data.catalogue import catalogue_of
from kidneyct.data.prepare import prepare_data
from kidneyct.data.splits import fold_strata, grouped_stratified_folds, split_strata
from kidneyct.preprocess import Preprocessing

PREP = Preprocessing(image_size=32)


def _prepare(sources, tmp_path, **options):
    return prepare_data(sources, "tumor,normal", PREP, tmp_path / "split.csv", seed=0, workers=1, progress=False,
                        cache=CacheSettings(False), **options)


def _sides(samples_by_part: dict) -> dict[str, set]:
    sides = defaultdict(set)
    for part, samples in samples_by_part.items():
        for sample in samples:
            sides[sample.group].add(part)
    return sides


def test_groups_are_inferred_per_source_and_never_straddle_splits(sources, tmp_path):
    data = _prepare(sources, tmp_path)
    samples = [s for split in data.splits.values() for s in split.samples]
    assert len(samples) == 54
    assert all(len(parts) == 1 for parts in _sides({k: v.samples for k, v in data.splits.items()}).values())
    kaggle = {s.group for s in samples if s.source == "kaggle"}
    assert len(kaggle) == 10 and all(g.startswith("kaggle:s") for g in kaggle)  # 10 series of 3 copies
    assert data.grouping.summary["per_source"]["kits"]["groups"] == 12
    for source in ("kaggle", "kits", "pancreas"):  # every source takes part in training
        assert any(s.source == source for s in data.splits["train"].samples)
    summary = data.sources_summary()
    assert summary["kits"]["classes"] == {"Tumor": 6, "Normal": 6} and summary["kits"]["masked"] == 12
    assert summary["pancreas"]["licence"] == "CC BY 3.0" and summary["pancreas"]["groups"] == 4
    assert data.splits["train"].sources[0] in {"kaggle", "kits", "pancreas"}


def test_the_split_csv_names_sources_and_reads_back_the_same_split(sources, tmp_path):
    first = _prepare(sources, tmp_path)
    header = (tmp_path / "split.csv").read_text().splitlines()[0]
    assert header == "path,slice_index,label,group,split,source"
    again = _prepare(sources, tmp_path, reuse_split=True)
    for name in ("train", "val", "test"):
        assert [(s.key, s.group, s.source, s.mask) for s in again.splits[name].samples] == \
               [(s.key, s.group, s.source, s.mask) for s in first.splits[name].samples]


def test_a_held_out_source_is_the_whole_test_split(sources, tmp_path):
    data = _prepare(sources, tmp_path, test_source="pancreas")
    assert {s.source for s in data.splits["test"].samples} == {"pancreas"} and len(data.splits["test"]) == 12
    assert not any(s.source == "pancreas" for name in ("train", "val") for s in data.splits[name].samples)
    with pytest.raises(ValueError, match="test source 'nowhere'"):
        _prepare(sources, tmp_path, test_source="nowhere")


def test_folds_keep_patients_together_and_spread_each_source_class(sources):
    samples = [replace(s, group=s.group or s.key) for s in catalogue_of(sources, "tumor,normal").samples]
    groups = [s.group for s in samples]  # here every Kaggle image is its own group
    strata = fold_strata(samples)
    assert set(strata) == {"kaggle:Tumor", "kaggle:Normal", "kits:Tumor", "kits:Normal", "pancreas:Normal"}
    folds = grouped_stratified_folds(strata, groups, 3, seed=0)
    assert all(len(parts) == 1 for parts in _sides(
        {f: [s for s, k in zip(samples, folds) if k == f] for f in range(3)}).values())
    for stratum in set(strata):
        assert len({k for k, s in zip(folds, strata) if s == stratum}) == 3  # in every fold
    one_source = [s for s in samples if s.source == "kits"]
    assert split_strata(one_source) == [s.label for s in one_source]  # one source: the class alone, as before
