"""Segmenting checkpoints as one ensemble checkpoint: the mean of the members' slice and map logits on every crop of
both looks, the same on the PyTorch and ONNX backends, and refused when the members do not fit together."""

from __future__ import annotations

import numpy as np
import pytest

from kidneyct.checkpoint import read_checkpoint
from kidneyct.checkpoint.model import write_ensemble
from kidneyct.errors import CheckpointError
from kidneyct.inference.predictor import PredictOptions, Predictor


@pytest.fixture(scope="module")
def members(segmenter, other_segmenter) -> list:
    return [segmenter, other_segmenter]


@pytest.fixture(scope="module")
def ensemble(members, tmp_path_factory):
    return write_ensemble(members, tmp_path_factory.mktemp("ensemble") / "ensemble.pt")


def _size(checkpoint) -> int:
    return read_checkpoint(checkpoint).outputs.segmentation.work_size


def test_the_ensemble_is_the_mean_of_its_members_logits_and_maps(members, ensemble):
    crops = np.random.default_rng(0).random((3, 1, _size(ensemble), _size(ensemble)), dtype=np.float32)
    runs = [Predictor.open(m, "cpu", options=PredictOptions(workers=0)).backend.runner()(crops) for m in members]
    logits, maps = Predictor.open(ensemble, "cpu", options=PredictOptions(workers=0)).backend.runner()(crops)
    assert not np.allclose(runs[0][1], runs[1][1], atol=1e-3)  # the members differ, so the mean is a test
    np.testing.assert_allclose(logits, (runs[0][0] + runs[1][0]) / 2, atol=1e-5)
    np.testing.assert_allclose(maps, (runs[0][1] + runs[1][1]) / 2, atol=1e-5)
    checkpoint = read_checkpoint(ensemble)
    assert len(checkpoint.members) == 2 and checkpoint.outputs.segmentation is not None
    assert "not refitted" in checkpoint.calibration.method  # until a validation split refits it


def test_an_ensemble_runs_the_same_on_both_backends(ensemble):
    torch_run = Predictor.open(ensemble, "cpu", options=PredictOptions(workers=0)).backend
    onnx_run = Predictor.open(ensemble, "cpu", backend="onnx", options=PredictOptions(workers=0)).backend
    side = 2 * _size(ensemble)  # the body view; the looks cut their crops from it
    views = np.random.default_rng(1).integers(0, 256, (2, side, side), dtype=np.uint8)
    ours, theirs = torch_run.forward(views), onnx_run.forward(views)
    np.testing.assert_allclose(theirs.logits, ours.logits, atol=1e-3)
    np.testing.assert_allclose(theirs.maps, ours.maps, atol=1e-3)


def test_members_with_other_outputs_are_not_one_ensemble(members, tmp_path):
    from dataclasses import replace

    from kidneyct.checkpoint import write_checkpoint

    other = read_checkpoint(members[1])
    other = write_checkpoint(replace(other, outputs=replace(other.outputs, slice_probability="head")),
                             tmp_path / "head.pt")
    with pytest.raises(CheckpointError, match="not one ensemble"):
        write_ensemble([members[0], other], tmp_path / "mixed.pt")
