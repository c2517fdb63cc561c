"""A checkpoint that would predict nonsense is refused when it is loaded, with the reason: temperature 0
(NaN probabilities), more classes than outputs (a class silently dropped), weights of the wrong shapes."""

from __future__ import annotations

import pytest
import torch

from kidneyct.checkpoint.model import load_model
from kidneyct.errors import CheckpointError


def _altered(source, folder, change) -> str:
    payload = torch.load(source, weights_only=True)
    change(payload)
    path = folder / "altered.pt"
    torch.save(payload, path)
    return str(path)


def _shrink_first_weight(payload):
    key = next(k for k, v in payload["state_dict"].items() if v.ndim == 4)
    payload["state_dict"][key] = payload["state_dict"][key][:, :, :1, :1].clone()


@pytest.mark.parametrize("change, message", [
    (lambda p: p["calibration"].update(temperature=0.0), "temperature 0.0 is not a finite number above 0"),
    (lambda p: p["calibration"].update(temperature=float("nan")), "temperature nan"),
    (lambda p: p.update(operating_point={"threshold": 1.5, "method": "given"}), "threshold 1.5 is not a probability"),
    (lambda p: p.update(classes=["Tumor", "Normal", "Cyst"]), "2 outputs for 3 classes"),
    (lambda p: p.update(classes=["Tumor", "Tumor"]), "not two or more distinct names"),
    (lambda p: p["model"].update(name="no-such-model", num_classes=2), "unusable model configuration"),
    (lambda p: p.pop("preprocessing"), "unusable checkpoint"),
    (lambda p: p.update(version=99), "newer kidneyct"),
    (_shrink_first_weight, "weights do not fit"),
])
def test_inconsistent_checkpoints_are_refused_with_the_reason(trained_run, tmp_path, change, message):
    path = _altered(trained_run.best_checkpoint, tmp_path, change)
    with pytest.raises(CheckpointError, match=message):
        load_model(path)


def test_predict_reports_an_unusable_checkpoint_in_one_line(trained_run, tmp_path, capsys):
    from kidneyct.cli import main

    path = _altered(trained_run.best_checkpoint, tmp_path, lambda p: p["calibration"].update(temperature=0.0))
    assert main(["predict", "--checkpoint", path, str(tmp_path), "--device", "cpu", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "temperature 0.0" in err and "Traceback" not in err
