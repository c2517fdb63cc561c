"""The study settings a checkpoint records (study rule, scope statistics, intensity profile), fitted after
training or added to an older checkpoint, and what prediction makes of them on single slices."""

import numpy as np
import pytest
from PIL import Image

import kidneyct
from kidneyct.study.rule import DEFAULT_RULE
from dataclasses import replace

from kidneyct.checkpoint import read_checkpoint, write_checkpoint
from kidneyct.study.settings import LEGACY_SETTINGS
from kidneyct.training.study_settings import refit_study_settings


def test_an_older_checkpoint_gets_its_study_settings_from_its_own_split(trained_run, phantom_png, tmp_path, capsys):
    import json

    from kidneyct.cli import main

    trained = read_checkpoint(trained_run.best_checkpoint)
    assert trained.study.features is not None and trained.study.intensity is not None  # training records them
    # Beside split.csv, as a checkpoint of a version before study settings were recorded.
    write_checkpoint(replace(trained, study=LEGACY_SETTINGS), trained_run.out / "older.pt")
    assert main(["study-settings", "--checkpoint", str(trained_run.out / "older.pt"),
                 "--out", str(tmp_path / "with-settings.pt")]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    stored = read_checkpoint(tmp_path / "with-settings.pt").study
    assert stored.rule == DEFAULT_RULE and printed["study_rule"] == DEFAULT_RULE.to_dict()
    features = stored.features
    assert printed["feature_threshold"] == features.threshold and printed["intensity"]
    assert len(features.mean) == 128 and np.asarray(features.cholesky).shape == (128, 128)
    assert features.threshold > 0 and features.n_train == trained_run.split_sizes["train"]
    assert features.threshold == pytest.approx(trained.study.features.threshold, rel=1e-4)  # training's fit
    assert features.n_val == trained_run.split_sizes["val"] and stored.scope.margin_mm == 6.0
    assert len(stored.intensity.histogram) == 32 and abs(sum(stored.intensity.histogram) - 1) < 1e-6


def test_single_slices_unlike_the_training_slices_are_out_of_scope(trained_run, phantom_png, tmp_path):
    refit_study_settings(trained_run.best_checkpoint, tmp_path / "ckpt.pt")
    rng = np.random.default_rng(0)
    folder = tmp_path / "inputs"
    folder.mkdir()
    Image.fromarray(rng.integers(0, 256, (128, 128), dtype=np.uint8)).save(folder / "noise.png")
    tall = np.zeros((128, 128), np.uint8)
    tall[8:120, 44:84] = 120  # a body taller than wide: a coronal or sagittal cut
    Image.fromarray(tall).save(folder / "coronal.png")
    phantoms = sorted((phantom_png / "Normal").glob("*- (*).png"))[:12]
    results = kidneyct.load(tmp_path / "ckpt.pt").run([folder, *phantoms])
    by_name = {s.source.split("/")[-1]: s for r in results for s in r.slices}
    assert not by_name["noise.png"].in_scope and "unlike the training slices" in by_name["noise.png"].scope_reason
    assert not by_name["coronal.png"].in_scope and "not an axial slice" in by_name["coronal.png"].scope_reason
    training_like = [by_name[p.name] for p in phantoms]
    assert np.mean([r.in_scope for r in training_like]) >= 0.9
    assert all("kidney located" in r.scope_reason or "like the training slices" in r.scope_reason
               for r in training_like if r.in_scope)
