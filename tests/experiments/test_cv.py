import csv
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from kidneyct.cli import main
from kidneyct.config import TrainConfig, recipe_config
from kidneyct.data.catalogue import build_catalogue
from kidneyct.data.splits import grouped_stratified_folds
from kidneyct.experiments.cv import LEVELS, METRICS, CVConfig, cross_validate
from kidneyct.experiments.evaluate import evaluate
from kidneyct.training.train import train


@pytest.fixture(scope="module")
def phantom_series(tmp_path_factory):
    """80 Tumor/Normal phantom slices in short series (1-3 slices): about 40 series to deal into folds."""
    from kidneyct.synthetic.phantom import generate_dataset

    root = tmp_path_factory.mktemp("cv_phantoms")
    generate_dataset(root, n=80, seed=3, size=96, classes=["Tumor", "Normal"], slices_per_series=(1, 3),
                     progress=False)
    return root


@pytest.fixture(scope="module")
def cv_run(phantom_series, tmp_path_factory):
    out = tmp_path_factory.mktemp("cv")
    config = TrainConfig(data=str(phantom_series), out=str(out), model="seed-cnn", image_size=96, epochs=1,
                         batch_size=16, device="cpu", progress=False, workers=1)
    return cross_validate(CVConfig(config, folds=3))


def test_folds_keep_series_together_and_stratify():
    rng = np.random.default_rng(0)
    groups, labels = [], []
    for g in range(120):
        label = int(rng.random() < 0.3)
        size = int(rng.integers(1, 6))
        groups += [f"g{g}"] * size
        labels += [label] * size
    folds = grouped_stratified_folds(labels, groups, 5, seed=1)
    by_group = defaultdict(set)
    for group, fold in zip(groups, folds):
        by_group[group].add(fold)
    assert all(len(f) == 1 for f in by_group.values())
    counts = Counter(zip(labels, folds))
    for label in (0, 1):
        per_fold = [counts[(label, k)] for k in range(5)]
        expected = labels.count(label) / 5
        assert max(abs(c - expected) for c in per_fold) <= 5  # within one largest group of the target
    assert grouped_stratified_folds(labels, groups, 5, seed=1) == folds  # deterministic
    with pytest.raises(ValueError):
        grouped_stratified_folds([0, 1], ["a", "b"], 3)


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_every_image_tested_once_and_no_series_in_two_folds(cv_run, phantom_series):
    out = cv_run.out
    predictions = _rows(out / "predictions.csv")
    n_images = len(build_catalogue(phantom_series, "tumor,normal").samples)
    assert len(predictions) == n_images == len({(r["path"], r["slice_index"]) for r in predictions})
    tested = Counter()
    test_groups = []
    for k in range(3):
        split = _rows(out / f"fold-{k}" / "split.csv")
        by_split = defaultdict(set)
        for row in split:
            by_split[row["split"]].add(row["group"])
            if row["split"] == "test":
                tested[row["path"]] += 1
        # Within a fold no series spans train/val/test; the test fold is all of fold k's series.
        assert not (by_split["train"] & by_split["val"]) and not (by_split["test"] & (by_split["train"] | by_split["val"]))
        assert by_split["val"], "validation is carved from the training folds"
        test_groups.append(by_split["test"])
        assert {r["group"] for r in predictions if r["fold"] == str(k)} == by_split["test"]
    assert sum(tested.values()) == n_images and set(tested.values()) == {1}
    assert not (test_groups[0] & test_groups[1]) and not (test_groups[0] & test_groups[2]) \
        and not (test_groups[1] & test_groups[2])
    # Stratification: every test fold holds about a third of each class.
    for label in ("Tumor", "Normal"):
        total = sum(r["label"] == label for r in predictions)
        per_fold = [sum(r["label"] == label and r["fold"] == str(k) for r in predictions) for k in range(3)]
        assert all(abs(c - total / 3) <= 4 for c in per_fold), per_fold


def test_aggregates_are_mean_and_sd_of_the_folds(cv_run):
    saved = json.loads((cv_run.out / "cv.json").read_text())
    folds = _rows(cv_run.out / "folds.csv")
    assert len(folds) == 3 == len(saved["folds"])
    for level in LEVELS:
        for name, _ in METRICS:
            values = np.array([float(f[f"{level}_{name}"]) for f in folds])
            entry = saved["summary"][level][name]
            assert entry["n"] == 3
            assert entry["mean"] == pytest.approx(values.mean(), abs=1e-9)
            assert entry["std"] == pytest.approx(values.std(ddof=1), abs=1e-9)
    markdown = (cv_run.out / "cv.md").read_text()
    assert "Balanced accuracy" in markdown and "per series" in markdown and "## Per fold" in markdown


def test_cv_cli(phantom_series, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["cv", "--data", str(phantom_series), "--model", "seed-cnn", "--image-size", "96", "--epochs", "1",
                 "--folds", "2", "--device", "cpu", "--no-progress", "--workers", "1", "--label-smoothing", "0.1",
                 "--out", str(out)])
    assert code == 0
    assert "2-fold grouped cross-validation" in capsys.readouterr().out
    saved = json.loads((out / "cv.json").read_text())
    assert saved["config"]["folds"] == 2 and saved["config"]["train"]["label_smoothing"] == 0.1


def test_feature_memo_serves_subsets_of_one_cache_like_a_fresh_extraction(tmp_path):
    import torch

    from kidneyct.data.rows import Rows
    from kidneyct.models import ModelConfig, create_model
    from kidneyct.preprocess import Augmentation, Preprocessing
    from kidneyct.training.distributed import DistContext
    from kidneyct.training.engine import ImageStore
    from kidneyct.training.features import FeatureMemo, extract_features, subset_features

    path = tmp_path / "rows.npy"
    np.save(path, np.random.default_rng(0).integers(0, 255, (12, 32, 32), dtype=np.uint8))
    base = np.load(path, mmap_mode="r")
    model = create_model(ModelConfig("efficientnet-lite0", 2, 32, "none", True))
    prep, ctx, device = Preprocessing(32), DistContext(), torch.device("cpu")
    first, second = Rows(base, np.array([0, 3, 5])), Rows(base, np.array([5, 11]))
    memo = FeatureMemo()
    a = subset_features(model, prep, first, 1, Augmentation(), 0, ctx, device, memo=memo)
    b = subset_features(model, prep, second, 1, Augmentation(), 0, ctx, device, memo=memo)
    assert a.shape[:2] == (2, 3) and b.shape[:2] == (2, 2)
    assert torch.allclose(a[:, 2], b[:, 0])  # row 5, computed once
    fresh = extract_features(model, prep, ImageStore.create(second, device), 0, None, 0, ctx)
    assert torch.allclose(b[0], fresh[0], atol=1e-5)  # the plain view does not depend on the subset
    # On disk: a later block (another process, in practice) loads the same features instead of recomputing.
    c = subset_features(model, prep, second, 1, Augmentation(), 0, ctx, device, memo=FeatureMemo(tmp_path / "memo"))
    assert len(list((tmp_path / "memo").glob("features-*.pt"))) == 1
    import kidneyct.training.features as features_module

    calls = []
    original = features_module.extract_features
    features_module.extract_features = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        later = FeatureMemo(tmp_path / "memo")  # another process, in practice
        d = subset_features(model, prep, second, 1, Augmentation(), 0, ctx, device, memo=later)
        e = subset_features(model, Preprocessing(32, tta_hflip=True), second, 1, Augmentation(), 0, ctx, device,
                            memo=later)
    finally:
        features_module.extract_features = original
    assert not calls and torch.equal(c, d) and torch.equal(d, e)


def test_frozen_cv_tests_on_memo_features_like_the_full_model(phantom_series, tmp_path):
    """The test fold's logits from the head on memo features equal the checkpoint's full forward pass."""
    import torch

    from kidneyct.data.rows import Rows
    from kidneyct.experiments.cv import _test_logits
    from kidneyct.inference.predictor import Predictor
    from kidneyct.training.features import FeatureMemo

    config = TrainConfig(data=str(phantom_series), out=str(tmp_path / "run"), model="efficientnet-lite0",
                         pretrained="none", image_size=32, epochs=1, device="cpu", progress=False, workers=1,
                         feature_views=1)
    result = train(config)
    predictor = Predictor.open(result.best_checkpoint, "cpu")
    path = tmp_path / "rows.npy"
    np.save(path, np.random.default_rng(0).integers(0, 255, (10, 32, 32), dtype=np.uint8))
    rows = Rows(np.load(path, mmap_mode="r"), np.array([1, 4, 7]))
    full = predictor.logits(rows)
    from_memo = _test_logits(predictor, config, rows, FeatureMemo())
    np.testing.assert_allclose(from_memo, full, atol=1e-4)


@pytest.fixture(scope="module")
def repeated_run(phantom_series, tmp_path_factory):
    out = tmp_path_factory.mktemp("cv_repeated")
    config = TrainConfig(data=str(phantom_series), out=str(out), model="seed-cnn", image_size=96, epochs=1,
                         batch_size=16, device="cpu", progress=False, workers=1)
    return cross_validate(CVConfig(config, folds=2, repeats=2, keep_models=True, bootstrap=100))


def test_repeats_test_every_image_once_per_repeat_in_other_folds(repeated_run):
    predictions = _rows(repeated_run.out / "predictions.csv")
    by_repeat = defaultdict(list)
    for row in predictions:
        by_repeat[row["repeat"]].append((row["path"], row["fold"]))
    assert set(by_repeat) == {"0", "1"}
    assert sorted(p for p, _ in by_repeat["0"]) == sorted(p for p, _ in by_repeat["1"])
    assert dict(by_repeat["0"]) != dict(by_repeat["1"])  # another fold assignment
    assert (repeated_run.out / "repeat-1" / "fold-1" / "best.pt").exists()
    assert len(repeated_run.folds) == 4


def test_ranking_reports_means_over_repeats_with_intervals(repeated_run):
    saved = json.loads((repeated_run.out / "cv.json").read_text())
    entry = saved["ranking"]["tumor_vs_normal"]["series"]["roc_auc"]
    assert len(entry["repeats"]) == 2
    assert entry["value"] == pytest.approx(np.mean(entry["repeats"]))
    assert entry["ci_low"] <= entry["value"] <= entry["ci_high"]
    assert "Sensitivity at specificity 0.90" in (repeated_run.out / "cv.md").read_text()


def test_ensemble_of_the_fold_models_is_the_mean_of_their_probabilities(repeated_run, phantom_series):
    from kidneyct.inference.predictor import Predictor

    ensemble = Predictor.open(repeated_run.ensemble)
    members = [Predictor.open(repeated_run.out / f"fold-{k}" / "best.pt") for k in range(2)]
    images = sorted((phantom_series / "Tumor").glob("*.png"))[:3] + sorted((phantom_series / "Normal").glob("*.png"))[:3]
    images = [p for p in images if ".mask." not in p.name]
    expected = np.mean([[list(m.predict(p).slices[0].probabilities.values()) for p in images] for m in members], axis=0)
    got = np.array([list(ensemble.predict(p).slices[0].probabilities.values()) for p in images])
    assert len(ensemble.checkpoint.members) == 2
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_compare_with_a_finished_run_on_the_same_folds(repeated_run, phantom_series, tmp_path):
    config = TrainConfig(data=str(phantom_series), out=str(tmp_path / "candidate"), model="seed-cnn", image_size=96,
                         epochs=1, batch_size=16, device="cpu", progress=False, workers=1, label_smoothing=0.2)
    result = cross_validate(CVConfig(config, folds=2, repeats=2, compare=str(repeated_run.out), bootstrap=100))
    entry = result.comparison["tumor_vs_normal"]["image"]["roc_auc"]
    assert entry["delta"] == pytest.approx(entry["candidate"] - entry["baseline"])
    assert entry["baseline"] == pytest.approx(repeated_run.ranking["tumor_vs_normal"]["image"]["roc_auc"]["value"])
    assert "Paired comparison" in (result.out / "cv.md").read_text()
    other_folds = replace_out(config, tmp_path / "other")
    with pytest.raises(ValueError, match="same folds"):
        cross_validate(CVConfig(other_folds, folds=2, repeats=1, fold_seed=7, compare=str(repeated_run.out)))


def replace_out(config, out):
    from dataclasses import replace

    return replace(config, out=str(out), epochs=1)


def test_resume_reuses_finished_folds_and_retrains_changed_ones(repeated_run, phantom_series, tmp_path,
                                                               monkeypatch):
    import shutil

    import kidneyct.experiments.cv as cv_module

    out = tmp_path / "resumed"
    shutil.copytree(repeated_run.out, out)
    (out / "repeat-1" / "fold-1" / "best.pt").unlink()  # as if the run had been killed in its last fold
    trained = []
    real_train = cv_module.train
    monkeypatch.setattr(cv_module, "train", lambda config, **kw: trained.append(config.out) or real_train(config, **kw))
    config = TrainConfig(data=str(phantom_series), out=str(out), model="seed-cnn", image_size=96, epochs=1,
                         batch_size=16, device="cpu", progress=False, workers=1)
    result = cross_validate(CVConfig(config, folds=2, repeats=2, bootstrap=100, resume=True))
    assert trained == [str(out / "repeat-1" / "fold-1")]
    before, after = _rows(repeated_run.out / "predictions.csv"), _rows(result.out / "predictions.csv")
    assert [r for r in after if r["repeat"] == "0"] == [r for r in before if r["repeat"] == "0"]
    trained.clear()
    changed = replace_out(TrainConfig(**{**config.__dict__, "label_smoothing": 0.2}), out)
    cross_validate(CVConfig(changed, folds=2, repeats=1, bootstrap=100, resume=True))
    assert trained == [str(out / "fold-0"), str(out / "fold-1")]


def test_resume_continues_a_fold_killed_mid_training_from_its_last_epoch(phantom_series, tmp_path, monkeypatch):
    """A fold takes a quarter of an hour on a CPU: a run killed during fold 2's second epoch trains on from its
    last.pt, and reports what the uninterrupted run does."""
    import kidneyct.experiments.cv as cv_module
    import kidneyct.training.train as train_module

    def config(out):
        return TrainConfig(data=str(phantom_series), out=str(out), model="seed-cnn", image_size=96, epochs=2,
                           batch_size=16, device="cpu", progress=False, workers=1)

    whole = cross_validate(CVConfig(config(tmp_path / "whole"), folds=2, bootstrap=50))
    real_write = train_module.write_checkpoint
    killed = tmp_path / "killed"

    def write_then_die(checkpoint, path):
        real_write(checkpoint, path)
        in_fold_two = Path(path).parent == killed / "fold-1"
        if in_fold_two and Path(path).name == "last.pt" and checkpoint.progress.epoch == 1:
            raise KeyboardInterrupt  # the session ends

    monkeypatch.setattr(train_module, "write_checkpoint", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        cross_validate(CVConfig(config(killed), folds=2, bootstrap=50))
    monkeypatch.setattr(train_module, "write_checkpoint", real_write)
    resumed = []
    real_train = train_module.train
    monkeypatch.setattr(cv_module, "train", lambda c, resume=False, **kw: resumed.append((c.out, resume))
                        or real_train(c, resume=resume, **kw))
    result = cross_validate(CVConfig(config(killed), folds=2, bootstrap=50, resume=True))
    assert resumed == [(str(killed / "fold-1"), True)]
    history = _rows(killed / "fold-1" / "metrics.csv")
    assert [r["epoch"] for r in history] == ["1", "2"]
    np.testing.assert_allclose([float(r["p_Tumor"]) for r in _rows(result.out / "predictions.csv")],
                               [float(r["p_Tumor"]) for r in _rows(whole.out / "predictions.csv")], atol=1e-5)


def test_resume_trains_a_fold_afresh_when_its_split_changed(phantom_series, tmp_path):
    """A last.pt is continued only on the split it was trained on."""
    from kidneyct.experiments.fold_store import interrupted_training

    out = tmp_path / "fold"
    trained = train(TrainConfig(data=str(phantom_series), out=str(out), model="seed-cnn", image_size=96, epochs=1,
                                batch_size=16, device="cpu", progress=False, workers=1))
    stored = read_config(trained.last_checkpoint)
    assert interrupted_training(stored, split_unchanged=True)
    assert not interrupted_training(stored, split_unchanged=False)
    assert not interrupted_training(replace_out(TrainConfig(**{**stored.__dict__, "label_smoothing": 0.3}), out),
                                    split_unchanged=True)


def read_config(checkpoint):
    from kidneyct.checkpoint import read_checkpoint

    return read_checkpoint(checkpoint).training.config


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory):
    """Two phantom sources: 'alpha' (series of 1-3 slices) and 'beta' (pairs, with label masks)."""
    from kidneyct.synthetic.phantom import generate_dataset

    root = tmp_path_factory.mktemp("cv_sources")
    generate_dataset(root / "alpha", n=40, seed=3, size=64, classes=["Tumor", "Normal"], slices_per_series=(1, 3),
                     progress=False)
    generate_dataset(root / "beta", n=24, seed=5, size=64, classes=["Tumor", "Normal"], slices_per_series=(2, 2),
                     progress=False, masks=True)
    return root


def test_leave_one_source_out_trains_on_the_others_and_reports_per_source(two_sources, tmp_path, capsys):
    from kidneyct.checkpoint import read_checkpoint

    out = tmp_path / "loso"
    code = main(["cv", "--data", str(two_sources / "alpha"), "--data", str(two_sources / "beta"), "--test-source",
                 "beta", "--model", "seed-cnn", "--image-size", "96", "--epochs", "1", "--no-kidney-crop",
                 "--no-body-crop", "--device", "cpu", "--no-progress", "--workers", "1", "--bootstrap", "30",
                 "--out", str(out)])
    assert code == 0 and "Leave one source out" in capsys.readouterr().out
    predictions = _rows(out / "predictions.csv")
    assert len(predictions) == 24 and {(r["source"], r["fold"]) for r in predictions} == {("beta", "0")}
    assert all(r["group"].startswith("beta:") for r in predictions)
    split = _rows(out / "fold-0" / "fold-split.csv")
    assert {(r["split"], r["source"]) for r in split} == {("train", "alpha"), ("val", "alpha"), ("test", "beta")}
    saved = json.loads((out / "cv.json").read_text())
    rows = saved["per_source"]["rows"]
    assert list(rows) == ["beta", "pooled"] and rows["beta"]["images"] == 24 and rows["beta"]["tumor"] == 12
    assert saved["sources"]["beta"]["masked"] == 24 and saved["sources"]["alpha"]["classes"] == {"Tumor": 20,
                                                                                              "Normal": 20}
    assert "## Per source" in (out / "cv.md").read_text()
    recorded = {record.name: record for record in read_checkpoint(out / "fold-0" / "best.pt").sources}
    assert sum(recorded["alpha"].counts.values()) == 40 and recorded["beta"].settings["grouping"] == "series"
    report = evaluate(out / "fold-0" / "best.pt", out=tmp_path / "report", device="cpu", n_boot=20, progress=False,
                      workers=1)  # the checkpoint's own sources and split
    metrics = json.loads((report.out / "metrics.json").read_text())
    assert list(metrics["per_source"]["rows"]) == ["beta", "pooled"] and metrics["metrics"]["n"] == 24
    assert {r["source"] for r in _rows(report.out / "predictions.csv")} == {"beta"}
    assert "Per source" in report.markdown.read_text()


def test_a_segmenting_model_is_cross_validated_with_its_dice_per_source(tmp_path):
    """Its test folds go through the two looks, and the per-source table gets tumor and kidney Dice from the
    predicted label maps; a resumed run reads the same maps back."""
    from kidneyct.synthetic.phantom import generate_dataset

    data = tmp_path / "masked"
    generate_dataset(data, n=24, seed=5, size=128, classes=["Tumor", "Normal"], slices_per_series=(1, 1),
                     progress=False, masks=True)
    config = recipe_config("lite0-unet-zoom", str(data), str(tmp_path / "cv"), image_size=64, epochs=1,
                           batch_size=8, classes="tumor,normal", device="cpu", progress=False, workers=1)
    first = cross_validate(CVConfig(config, folds=2, bootstrap=50))
    row = json.loads((first.out / "cv.json").read_text())["per_source"]["rows"]["pooled"]
    assert row["kidney_dice_slices"] > 0 and 0.0 <= row["kidney_dice"] <= 1.0
    assert row["tumor_dice_slices"] > 0 and 0.0 <= row["tumor_dice_mean"] <= 1.0
    again = cross_validate(CVConfig(config, folds=2, bootstrap=50, resume=True))
    assert json.loads((again.out / "cv.json").read_text())["per_source"]["rows"]["pooled"]["kidney_dice"] == \
        row["kidney_dice"]
