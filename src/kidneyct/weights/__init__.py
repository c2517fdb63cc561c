"""The model shipped with kidneyct: `default.pt` (the checkpoint, fp16 weights) and `default.onnx` (its export,
which predicts without torch), built by `make model` (benchmarks/shipped_model.py) and described by its model
card (docs/model-card.md, and `Checkpoint.model_card` inside the files)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from kidneyct.errors import CheckpointError

CHECKPOINT, EXPORT = "default.pt", "default.onnx"


def weights_folder() -> Path:
    return Path(str(resources.files("kidneyct") / "weights"))


def shipped_checkpoint(onnx: bool = False) -> Path:
    """The shipped model's file: its ONNX export or its PyTorch checkpoint."""
    path = weights_folder() / (EXPORT if onnx else CHECKPOINT)
    if not path.is_file():
        raise CheckpointError(f"{path}: the shipped model is missing from this installation; build it with "
                              "`make model` or give --checkpoint")
    return path
