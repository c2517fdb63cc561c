"""Checkpoints as plain dicts of tensors and primitives: loadable with ``torch.load(weights_only=True)``,
written atomically so that an interrupted run never leaves a half-written file.

A checkpoint carries everything inference needs (nnU-Net style): the model config, the classes,
the preprocessing, the calibration temperature and the operating threshold. It is the contract between
training, which writes it, and inference and evaluation, which read it: so it lives below both.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from kidneyct.errors import CheckpointError
from kidneyct.io.atomic import atomic_write
from kidneyct.models.ensemble import Ensemble
from kidneyct.models.registry import ModelConfig, create_model, get_spec
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
    model_config: ModelConfig  # an ensemble's: its first member's
    classes: list[str]
    preprocessing: Preprocessing
    temperature: float
    threshold: float | None
    payload: dict
    cam_layer: str = ""  # the default Grad-CAM layer's module path in `model`

    @property
    def members(self) -> int:
        return len(self.payload.get("members", [])) or 1


def check_calibration(source, classes, temperature, threshold) -> None:
    """Raise CheckpointError unless the classes are distinct non-empty names, the temperature a finite
    number above 0 (0 would divide the logits into NaN probabilities) and the threshold None or in [0, 1].

    Args:
        source: the checkpoint or ONNX file, named in the error.
        classes, temperature, threshold: as stored.
    """
    if (not isinstance(classes, (list, tuple)) or len(classes) < 2 or len(set(classes)) != len(classes)
            or not all(isinstance(c, str) and c for c in classes)):
        raise CheckpointError(f"{source}: classes {classes!r} are not two or more distinct names")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not math.isfinite(temperature) or temperature <= 0:
        raise CheckpointError(f"{source}: calibration temperature {temperature!r} is not a finite number above 0")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                  or not 0 <= threshold <= 1):
        raise CheckpointError(f"{source}: tumor threshold {threshold!r} is not a probability in [0, 1]")


def _check_payload(path: Path, payload: dict) -> None:
    """Calibration, members' temperatures, and one output per class, before any model is built."""
    for key in ("classes", "model_config", "state_dict", "preprocessing"):
        if key not in payload:
            raise CheckpointError(f"{path}: incomplete checkpoint (no {key!r})")
    calibration = payload.get("calibration") or {}
    check_calibration(path, payload["classes"], calibration.get("temperature", 1.0), payload.get("threshold"))
    configs = [m.get("model_config", {}) for m in payload.get("members", [])] or [payload["model_config"]]
    for member in payload.get("members", []):
        check_calibration(path, payload["classes"], member.get("temperature"), None)
    for config in configs:
        if not isinstance(config, dict) or config.get("num_classes") != len(payload["classes"]):
            outputs = config.get("num_classes") if isinstance(config, dict) else config
            raise CheckpointError(f"{path}: the model has {outputs} outputs for {len(payload['classes'])} classes")


def _build(payload: dict) -> tuple[torch.nn.Module, ModelConfig, str]:
    if "members" in payload:  # an ensemble: members' configs and temperatures, one state dict for all
        configs = [ModelConfig(**m["model_config"]) for m in payload["members"]]
        model = Ensemble([create_model(c, load_pretrained=False) for c in configs],
                         [float(m["temperature"]) for m in payload["members"]])
        return model, configs[0], "members.0." + get_spec(configs[0].name).cam_layer
    config = ModelConfig(**payload["model_config"])
    # The checkpoint supplies every weight: no ImageNet download.
    return create_model(config, load_pretrained=False), config, get_spec(config.name).cam_layer


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    payload = read_checkpoint(path)
    _check_payload(Path(path), payload)
    try:
        model, config, cam_layer = _build(payload)
        preprocessing = Preprocessing.from_dict(payload["preprocessing"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: unusable model configuration ({type(error).__name__}: {error})") from None
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as error:
        raise CheckpointError(f"{path}: weights do not fit the stored model configuration ({error})") from None
    model.to(device).eval()
    calibration = payload.get("calibration") or {}
    return LoadedModel(
        model=model, model_config=config, classes=list(payload["classes"]),
        preprocessing=preprocessing,
        temperature=float(calibration.get("temperature", 1.0)), threshold=payload.get("threshold"),
        payload=payload, cam_layer=cam_layer,
    )


def write_ensemble(paths: list[str | Path], out: str | Path) -> Path:
    """One checkpoint holding the models of `paths` (e.g. a cross-validation's fold models): predict,
    evaluate, serve and export take it like any checkpoint, and its probabilities are the mean of the
    members' calibrated probabilities. Members must share classes and preprocessing; the ensemble's
    threshold is the mean of theirs (None when any has none).
    """
    payloads = [read_checkpoint(p) for p in paths]
    if not payloads:
        raise ValueError("an ensemble needs at least one member checkpoint")
    first = payloads[0]
    for path, payload in zip(paths, payloads):
        if payload["classes"] != first["classes"] or payload["preprocessing"] != first["preprocessing"]:
            raise CheckpointError(f"{path}: classes or preprocessing differ from {paths[0]}'s: not one ensemble")
    members = [{"model_config": p["model_config"], "temperature": (p.get("calibration") or {}).get("temperature", 1.0),
                "source": str(path), "best_epoch": p.get("best_epoch")} for path, p in zip(paths, payloads)]
    state = {f"members.{i}.{key}": value for i, p in enumerate(payloads) for key, value in p["state_dict"].items()}
    state["temperatures"] = torch.tensor([float(m["temperature"]) for m in members])
    thresholds = [p.get("threshold") for p in payloads]
    payload = {key: first[key] for key in ("format", "version", "kidneyct_version", "classes", "preprocessing",
                                           "augmentation", "train_config", "data") if key in first}
    payload.update({
        "model_config": first["model_config"], "members": members, "state_dict": state,
        "calibration": {"temperature": 1.0, "note": "members are calibrated one by one; the mean needs no more"},
        "threshold": None if any(t is None for t in thresholds) else float(sum(thresholds) / len(thresholds)),
        "epoch": None, "best_epoch": None, "history": [],
    })
    atomic_save(payload, out)
    return Path(out)
