"""Checkpoints as plain dicts of tensors and primitives: loadable with ``torch.load(weights_only=True)``,
written atomically so that an interrupted run never leaves a half-written file.

A checkpoint carries everything inference needs (nnU-Net style): the model config, the classes,
the preprocessing, the calibration temperature and the operating threshold. It is the contract between
training, which writes it, and inference and evaluation, which read it: so it lives below both.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from kidneyct.errors import CheckpointError
from kidneyct.io.atomic import atomic_write
from kidneyct.models.registry import ModelConfig, create_model
from kidneyct.preprocess import Preprocessing

FORMAT = "kidneyct-checkpoint"
VERSION = 1


def atomic_save(payload: dict, path: str | Path) -> None:
    atomic_write(path, lambda stream: torch.save(payload, stream))


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint dict safely. Anything needing arbitrary unpickling is refused."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: refused: the file needs arbitrary code to unpickle, which kidneyct never runs "
            f"(weights_only load failed: {str(error).splitlines()[0]})"
        ) from None
    except Exception as error:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a kidneyct checkpoint (missing format marker {FORMAT!r})")
    if payload.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: written by a newer kidneyct (format version {payload['version']})")
    return payload


@dataclass
class LoadedModel:
    model: torch.nn.Module
    model_config: ModelConfig
    classes: list[str]
    preprocessing: Preprocessing
    temperature: float
    threshold: float | None
    payload: dict


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    payload = read_checkpoint(path)
    config = ModelConfig(**payload["model_config"])
    model = create_model(config, load_pretrained=False)  # the checkpoint supplies every weight
    model.load_state_dict(payload["state_dict"])
    model.to(device).eval()
    calibration = payload.get("calibration") or {}
    return LoadedModel(
        model=model, model_config=config, classes=list(payload["classes"]),
        preprocessing=Preprocessing.from_dict(payload["preprocessing"]),
        temperature=float(calibration.get("temperature", 1.0)), threshold=payload.get("threshold"),
        payload=payload,
    )
