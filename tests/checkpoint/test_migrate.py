"""Checkpoints of the first schema still load: tests/fixtures/checkpoint-v0.1.pt was written by kidneyct 0.1.0 (see
checkpoint-v0.1.json for how), goes through the migration to today's typed Checkpoint and must give the same
numbers through today's code."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import kidneyct
from kidneyct.experiments.evaluate import evaluate
from kidneyct.io import CTSlice
from kidneyct.checkpoint import SCHEMA_VERSION, read_checkpoint, write_checkpoint
from kidneyct.checkpoint.model import load_model
from kidneyct.study.settings import LEGACY_SETTINGS
from kidneyct.synthetic.phantom import render_slice, sample_patient

FIXTURE = Path(__file__).parents[1] / "fixtures" / "checkpoint-v0.1.pt"
RECORDED = json.loads(FIXTURE.with_suffix(".json").read_text())


def _probe() -> np.ndarray:
    hu, _ = render_slice(sample_patient(np.random.default_rng(7), 128, "Tumor"), 0.0)
    return hu.astype(np.float32)


def test_an_old_checkpoint_predicts_what_it_predicted_when_written():
    predictor = kidneyct.load(FIXTURE)
    assert predictor.classes == ["Tumor", "Normal"]
    assert predictor.preprocessing.body_crop and predictor.preprocessing.tta_hflip
    image = predictor.preprocessing.to_uint8(CTSlice(_probe(), hu=True, source="<array>"))
    assert hashlib.sha256(image.tobytes()).hexdigest() == RECORDED["probe_uint8_sha256"]
    assert predictor.logits(image[None])[0] == pytest.approx(RECORDED["logits"], abs=1e-5)
    assert predictor.temperature == pytest.approx(RECORDED["temperature"])
    assert predictor.predict(_probe()).slices[0].probabilities == pytest.approx(RECORDED["probabilities"], abs=1e-6)


def test_the_first_schema_migrates_to_typed_records_that_survive_a_round_trip(tmp_path):
    import torch

    assert torch.load(FIXTURE, weights_only=True)["version"] == 1 < SCHEMA_VERSION
    old = read_checkpoint(FIXTURE)
    assert old.model.name == "seed-cnn" and old.model.image_size == 96 and old.classes == ["Tumor", "Normal"]
    assert old.temperature == pytest.approx(RECORDED["temperature"]) and old.calibration.validation.n == 10
    assert old.calibration.fitted_temperature == old.temperature and old.threshold is None
    assert old.study == LEGACY_SETTINGS  # written before study settings were recorded
    assert old.training.config.seed == 2 and old.data.split_sizes == {"train": 44, "val": 10, "test": 10}
    assert old.progress.best_epoch == 1 and old.progress.kept_epoch().val_accuracy == 0.5
    assert old.outputs.maps == () and old.sources == [] and old.model_card is None and old.resume is None
    again = read_checkpoint(write_checkpoint(old, tmp_path / "v2.pt"))
    assert torch.load(tmp_path / "v2.pt", weights_only=True)["version"] == SCHEMA_VERSION
    assert again.header() == old.header() and again.state_dict.keys() == old.state_dict.keys()


def test_evaluation_reads_an_old_checkpoint(phantom_png, tmp_path):
    assert load_model(FIXTURE).checkpoint.preprocessing.image_size == 96
    # Its training data are gone: evaluate every Tumor and Normal phantom slice of another set.
    result = evaluate(FIXTURE, data=phantom_png, split="all", out=tmp_path / "report", device="cpu", n_boot=20,
                      progress=False, workers=1)
    assert result.metrics["n"] == 48 and result.html.exists()
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["classes"] == ["Tumor", "Normal"]


def test_checkpoint_needing_arbitrary_unpickling_is_refused(tmp_path):
    import pickle

    from kidneyct.errors import CheckpointError

    class Exploit:
        def __reduce__(self):
            return (print, ("this would run code",))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"format": "kidneyct-checkpoint", "x": Exploit()}))
    with pytest.raises(CheckpointError, match="refused"):
        read_checkpoint(path)
