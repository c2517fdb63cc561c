"""ONNX export: the graph gives PyTorch's logits and features, carries the checkpoint as metadata, and predicts
through the one prediction path exactly as PyTorch does."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

import kidneyct
from kidneyct.cli import main
from kidneyct.errors import CheckpointError
from kidneyct.inference.backends import OnnxBackend, TorchBackend
from kidneyct.inference.export import export_onnx


@pytest.fixture(scope="module")
def onnx_model(trained_run, tmp_path_factory):
    return export_onnx(trained_run.best_checkpoint, tmp_path_factory.mktemp("onnx") / "model.onnx")


def test_onnx_logits_and_features_match_pytorch_for_any_batch_size_and_flip(trained_run, onnx_model):
    by_torch, by_onnx = TorchBackend.open(trained_run.best_checkpoint, "cpu"), OnnxBackend(onnx_model)
    images = np.random.default_rng(0).integers(0, 256, (7, 96, 96), dtype=np.uint8)
    for batch_size in (1, 3, 7):  # the batch axis is dynamic
        assert by_onnx.logits(images, batch_size).shape == (7, 2)
        assert np.abs(by_onnx.logits(images, batch_size) - by_torch.logits(images, batch_size)).max() < 1e-4
    assert np.abs(by_onnx.features(images, 3) - by_torch.features(images, 3)).max() < 1e-3
    plain = by_torch.logits(images)
    for backend in (by_torch, by_onnx):
        backend.checkpoint.preprocessing = replace(backend.checkpoint.preprocessing, tta_hflip=True)
    flipped = by_torch.logits(images, 2)
    assert np.abs(by_onnx.logits(images, 2) - flipped).max() < 1e-4
    assert np.abs(flipped - plain).max() > 1e-4  # the mirror image did count


def test_the_export_carries_the_checkpoint_and_predicts_what_pytorch_predicts(trained_run, onnx_model, phantom_png):
    by_torch, by_onnx = kidneyct.load(trained_run.best_checkpoint), kidneyct.load(onnx_model)
    assert by_onnx.backend.name == "onnxruntime" and by_onnx.checkpoint.header() == by_torch.checkpoint.header()
    for a, b in zip(by_torch.run([phantom_png / "Tumor"]), by_onnx.run([phantom_png / "Tumor"])):
        (x,), (y,) = a.slices, b.slices
        assert (x.source, x.call, x.in_scope, x.scope_reason) == (y.source, y.call, y.in_scope, y.scope_reason)
        assert x.probabilities == pytest.approx(y.probabilities, abs=1e-5)


def test_export_and_predict_commands(trained_run, phantom_png, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", "--checkpoint", str(trained_run.best_checkpoint), "--format", "onnx", "--out", str(out)]) == 0
    image = next((phantom_png / "Normal").glob("*[0-9]).png"))
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(out), str(image), "--no-progress"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(line["probabilities"]) == {"Tumor", "Normal"}


def test_onnx_without_kidneyct_metadata_is_refused(tmp_path):
    model = torch.nn.Conv2d(1, 1, 3).eval()
    path = tmp_path / "plain.onnx"
    torch.onnx.export(model, (torch.zeros(1, 1, 8, 8),), str(path), external_data=False, verbose=False)
    with pytest.raises(CheckpointError, match="no kidneyct metadata"):
        OnnxBackend(path)


def test_an_export_carries_the_study_rule(trained_run, phantom_png, tmp_path):
    from kidneyct.checkpoint import read_checkpoint, write_checkpoint
    from kidneyct.study.rule import StudyRule

    stored = read_checkpoint(trained_run.best_checkpoint)
    stored.study = replace(stored.study, rule=StudyRule("top_fraction", fraction=0.5))
    write_checkpoint(stored, tmp_path / "ckpt.pt")
    predictor = kidneyct.load(export_onnx(tmp_path / "ckpt.pt", tmp_path / "model.onnx"))
    assert predictor.rule == StudyRule("top_fraction", fraction=0.5) and predictor.summary().study_rule["kind"] == \
        "top_fraction"
    assert predictor.checkpoint.study.intensity == stored.study.intensity


def test_predict_with_an_onnx_model_imports_no_torch(onnx_model, phantom_png):
    import subprocess
    import sys

    code = ("import sys; from kidneyct.cli import main; assert main(sys.argv[1:]) == 0; "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:5]")
    image = next((phantom_png / "Tumor").glob("*[0-9]).png"))
    run = subprocess.run([sys.executable, "-c", code, "predict", "--checkpoint", str(onnx_model), str(image),
                          "--no-progress"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[-1])["source"] == str(image)
