"""Fixtures of the inference tests: tiny segmenting checkpoints (lite0-unet, random weights, nothing trained)."""

from __future__ import annotations

from pathlib import Path

import pytest

WORK_SIZE = 64  # the looks' crops; the body view is twice that


def segmenter_checkpoint(out: Path, kidney_logit: float, seed: int = 0) -> Path:
    """A lite0-unet checkpoint with random weights whose kidney map is `kidney_logit` everywhere (its last
    convolution's kidney channel zeroed: positive finds kidney on every pixel of the body view, negative on
    none) and whose tumor map is the random network's (some pixels tumor, some not)."""
    import torch

    from kidneyct.checkpoint import Checkpoint, OperatingPoint, Outputs, Segmentation, write_checkpoint
    from kidneyct.models import ModelConfig, create_model
    from kidneyct.preprocess import Preprocessing

    torch.manual_seed(seed)
    config = ModelConfig("lite0-unet", 2, WORK_SIZE, pretrained="none", freeze_backbone=False)
    model = create_model(config).eval()
    last = model.map_head[-1]
    with torch.no_grad():
        last.weight[0].zero_()
        last.bias[0] = kidney_logit
        last.bias[1] = 0.0
    checkpoint = Checkpoint(config, ["Tumor", "Normal"], Preprocessing(2 * WORK_SIZE, body_crop=True),
                            state_dict=model.state_dict(),
                            outputs=Outputs(("kidney", "tumor"), "mean", "kidney map", Segmentation(WORK_SIZE)),
                            operating_point=OperatingPoint(0.5, "fixed for tests"))
    return write_checkpoint(checkpoint, out)


@pytest.fixture(scope="session")
def segmenter(tmp_path_factory) -> Path:
    """A segmenting checkpoint that finds kidney everywhere in the body view."""
    return segmenter_checkpoint(tmp_path_factory.mktemp("segmenter") / "segmenter.pt", 6.0)


@pytest.fixture(scope="session")
def blind_segmenter(tmp_path_factory) -> Path:
    """The same network finding no kidney anywhere."""
    return segmenter_checkpoint(tmp_path_factory.mktemp("blind_segmenter") / "blind.pt", -6.0)


@pytest.fixture(scope="session")
def other_segmenter(tmp_path_factory) -> Path:
    """Another random network of the same kind (an ensemble's second member)."""
    return segmenter_checkpoint(tmp_path_factory.mktemp("other_segmenter") / "other.pt", 6.0, seed=1)
