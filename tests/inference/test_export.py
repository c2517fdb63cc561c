import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from kidneyct.cli import main
from kidneyct.errors import CheckpointError
from kidneyct.inference.batch import predict_inputs
from kidneyct.inference.export import export_onnx
from kidneyct.inference.predictor import OnnxPredictor, Predictor


@pytest.fixture(scope="module")
def onnx_model(trained_run, tmp_path_factory):
    return export_onnx(trained_run.best_checkpoint, tmp_path_factory.mktemp("onnx") / "model.onnx")


def test_onnx_logits_match_pytorch_for_any_batch_size(trained_run, onnx_model):
    torch_predictor = Predictor.from_checkpoint(trained_run.best_checkpoint, "cpu")
    onnx_predictor = OnnxPredictor(onnx_model)
    images = np.random.default_rng(0).integers(0, 256, (7, 96, 96), dtype=np.uint8)
    for batch_size in (1, 3, 7):  # the batch axis is dynamic
        reference = torch_predictor.logits_uint8(images, batch_size)
        exported = onnx_predictor.logits_uint8(images, batch_size)
        assert exported.shape == reference.shape == (7, 2)
        assert torch.max(torch.abs(exported - reference)).item() < 1e-4


def test_flip_tta_is_the_same_in_both_backends(trained_run, onnx_model):
    torch_predictor = Predictor.from_checkpoint(trained_run.best_checkpoint, "cpu")
    onnx_predictor = OnnxPredictor(onnx_model)
    images = np.random.default_rng(1).integers(0, 256, (5, 96, 96), dtype=np.uint8)
    plain = torch_predictor.logits_uint8(images)
    torch_predictor.loaded.preprocessing = replace(torch_predictor.preprocessing, tta_hflip=True)
    onnx_predictor.preprocessing = replace(onnx_predictor.preprocessing, tta_hflip=True)
    reference, exported = torch_predictor.logits_uint8(images, 2), onnx_predictor.logits_uint8(images, 2)
    assert torch.max(torch.abs(exported - reference)).item() < 1e-4
    assert torch.max(torch.abs(reference - plain)).item() > 1e-4  # the mirror image did count


def test_both_backends_answer_predict_alike(trained_run, onnx_model, phantom_png):
    image = next((phantom_png / "Tumor").glob("*[0-9]).png"))
    by_torch = Predictor.from_checkpoint(trained_run.best_checkpoint, "cpu").predict(image)
    by_onnx = OnnxPredictor(onnx_model).predict(str(image))
    assert by_onnx == pytest.approx(by_torch, abs=1e-5) and set(by_onnx) == {"Tumor", "Normal"}


def test_onnx_file_carries_the_inference_metadata(trained_run, onnx_model):
    predictor = OnnxPredictor(onnx_model)
    loaded = Predictor.from_checkpoint(trained_run.best_checkpoint, "cpu").loaded
    assert predictor.classes == loaded.classes
    assert predictor.preprocessing == loaded.preprocessing
    assert predictor.temperature == pytest.approx(loaded.temperature)
    assert predictor.threshold == loaded.threshold
    assert "not a medical device" in predictor.metadata["disclaimer"]


def test_predict_through_onnxruntime_gives_the_pytorch_probabilities(trained_run, onnx_model, phantom_png):
    inputs = [phantom_png / "Tumor"]
    by_torch = predict_inputs(Predictor.from_checkpoint(trained_run.best_checkpoint, "cpu"), inputs, progress=False)
    by_onnx = predict_inputs(OnnxPredictor(onnx_model), inputs, progress=False)
    assert by_onnx.backend == "onnxruntime" and len(by_onnx.slices) == len(by_torch.slices) > 0
    for a, b in zip(by_torch.slices, by_onnx.slices):
        assert a.source == b.source and a.predicted == b.predicted
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-5)


def test_export_and_predict_commands(trained_run, phantom_png, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", "--checkpoint", str(trained_run.best_checkpoint), "--format", "onnx", "--out", str(out)]) == 0
    image = next((phantom_png / "Normal").glob("*[0-9]).png"))
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(out), "--backend", "onnx", str(image), "--no-progress"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(line["probabilities"]) == {"Tumor", "Normal"}


def test_onnx_without_kidneyct_metadata_is_refused(tmp_path):
    model = torch.nn.Conv2d(1, 1, 3).eval()
    path = tmp_path / "plain.onnx"
    torch.onnx.export(model, (torch.zeros(1, 1, 8, 8),), str(path), external_data=False, verbose=False)
    with pytest.raises(CheckpointError, match="no kidneyct metadata"):
        OnnxPredictor(path)


def test_an_export_carries_the_study_rule_and_its_single_slices_say_they_were_not_feature_checked(trained_run,
                                                                                                 phantom_png, tmp_path):
    from kidneyct.study.rule import StudyRule, rule_of
    from kidneyct.models.checkpoint import atomic_save, read_checkpoint
    from kidneyct.training.study_settings import fit_study_settings

    payload = fit_study_settings(trained_run.best_checkpoint, tmp_path / "ckpt.pt")
    payload["study_rule"] = StudyRule("top_fraction", fraction=0.5).to_dict()
    atomic_save(payload, tmp_path / "ckpt.pt")
    predictor = OnnxPredictor(export_onnx(tmp_path / "ckpt.pt", tmp_path / "model.onnx"))
    assert rule_of(predictor.metadata) == StudyRule("top_fraction", fraction=0.5)
    assert predictor.metadata["intensity"] == read_checkpoint(tmp_path / "ckpt.pt")["intensity"]
    result = predict_inputs(predictor, [phantom_png / "Normal"], progress=False)
    assert result.study_rule["kind"] == "top_fraction"
    assert all(r.in_scope and ("kidney located" in r.scope_reason or "not checked" in r.scope_reason)
               for r in result.slices)
