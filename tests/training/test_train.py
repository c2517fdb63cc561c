import csv
import math

import pytest
import torch

from kidneyct.config import TrainConfig
from kidneyct.checkpoint import read_checkpoint
from kidneyct.training.train import class_weights, train


def test_training_writes_checkpoints_history_split_and_config(trained_run):
    out = trained_run.out
    for name in ("best.pt", "last.pt", "metrics.csv", "split.csv", "config.json"):
        assert (out / name).exists(), name
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    best = read_checkpoint(out / "best.pt")
    assert best.preprocessing.image_size == 96
    assert best.classes == ["Tumor", "Normal"]
    assert best.data.synthetic is True
    assert read_checkpoint(out / "last.pt").resume is not None and best.resume is None
    split_rows = list(csv.DictReader(open(out / "split.csv")))
    assert {r["split"] for r in split_rows} == {"train", "val", "test"}
    assert {r["label"] for r in split_rows} == {"Tumor", "Normal"}


def test_no_test_split_trains_on_all_but_the_validation_split(phantom_png, tmp_path):
    """The shipped model's training: every series in train or val, none held back; the checkpoint says so."""
    result = train(TrainConfig(data=str(phantom_png), out=str(tmp_path / "all"), model="seed-cnn", image_size=96,
                               epochs=1, batch_size=16, device="cpu", progress=False, workers=1, test_fraction=0.0,
                               body_crop=False))
    split_rows = list(csv.DictReader(open(result.out / "split.csv")))
    in_classes = [f for name in ("Tumor", "Normal") for f in (phantom_png / name).iterdir()
                  if not f.name.endswith(".mask.png")]
    assert {r["split"] for r in split_rows} == {"train", "val"} and len(split_rows) == len(in_classes)
    sizes = read_checkpoint(result.best_checkpoint).data.split_sizes
    assert not sizes.get("test") and sizes["train"] > sizes["val"] > 0


def test_resume_continues_from_last_checkpoint(trained_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run.out, run)
    before = read_checkpoint(run / "last.pt")
    placeholder = TrainConfig(data="ignored", out=str(run), device="cpu", progress=False, workers=1)
    result = train(placeholder, resume=True, extend_epochs=3)  # the stored configuration is used
    assert [h.epoch for h in result.history] == [1, 2, 3]
    assert result.history[:2] == before.progress.history
    after = read_checkpoint(run / "last.pt")
    assert after.progress.epoch == 3 and after.training.config.data == before.training.config.data


def test_resume_without_last_checkpoint_fails_clearly(tmp_path, phantom_png):
    with pytest.raises(FileNotFoundError, match="no .*last.pt"):
        train(TrainConfig(data=str(phantom_png), out=str(tmp_path / "none")), resume=True)


def test_class_weights_balance_the_loss():
    weights = class_weights(torch.tensor([0, 0, 0, 1]).numpy(), 2)
    assert torch.allclose(weights * torch.tensor([3.0, 1.0]), torch.tensor([2.0, 2.0]))


def test_epoch_log_says_when_validation_was_not_measured():
    from kidneyct.training.train import _validation_words

    skipped = _validation_words({"loss": math.nan, "accuracy": math.nan, "macro_f1": math.nan})
    assert "nan" not in skipped and "not measured" in skipped
    measured = _validation_words({"loss": 0.25, "accuracy": 0.9, "macro_f1": 0.875})
    assert "0.2500" in measured and "0.8750" in measured
