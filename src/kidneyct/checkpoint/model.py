"""A checkpoint's model, built and loaded (PyTorch), and ensembles of several checkpoints in one."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from kidneyct.checkpoint.files import read_checkpoint, write_checkpoint
from kidneyct.checkpoint.schema import Calibration, Checkpoint, Member, OperatingPoint
from kidneyct.errors import CheckpointError
from kidneyct.models.ensemble import Ensemble, SegmentingEnsemble
from kidneyct.models.registry import create_model, get_spec


@dataclass
class LoadedModel:
    """A checkpoint with its model built, its weights loaded and put in eval mode."""

    model: torch.nn.Module
    checkpoint: Checkpoint
    cam_layer: str = ""  # the default Grad-CAM layer's module path in `model`


def build_model(checkpoint: Checkpoint) -> tuple[torch.nn.Module, str]:
    """The checkpoint's architecture, untrained (every weight comes from the checkpoint: no ImageNet download),
    and its Grad-CAM layer's module path."""
    if checkpoint.members:  # an ensemble: members' configs (and temperatures), one state dict for all
        members = [create_model(m.model, load_pretrained=False) for m in checkpoint.members]
        model = (SegmentingEnsemble(members) if checkpoint.outputs.segmentation is not None
                 else Ensemble(members, [m.temperature for m in checkpoint.members]))
        return model, "members.0." + get_spec(checkpoint.members[0].model.name).cam_layer
    return create_model(checkpoint.model, load_pretrained=False), get_spec(checkpoint.model.name).cam_layer


def load_model(source: str | Path | Checkpoint, device: str | torch.device = "cpu") -> LoadedModel:
    """The model of a checkpoint file (or of a Checkpoint already read), weights loaded, on `device`."""
    checkpoint = source if isinstance(source, Checkpoint) else read_checkpoint(source)
    try:
        model, cam_layer = build_model(checkpoint)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{source}: unusable model configuration ({type(error).__name__}: {error})") from None
    try:
        model.load_state_dict(checkpoint.state_dict)  # copied into the parameters' dtype (fp16 files too)
    except (RuntimeError, TypeError, AttributeError) as error:
        raise CheckpointError(f"{source}: weights do not fit the stored model configuration ({error})") from None
    model.to(device).eval()
    return LoadedModel(model, checkpoint, cam_layer)


def write_ensemble(paths: list[str | Path], out: str | Path) -> Path:
    """One checkpoint holding the models of `paths` (e.g. a cross-validation's fold models): predict,
    evaluate, serve and export take it like any checkpoint. Members must share classes, preprocessing and
    outputs; the ensemble's threshold is the mean of theirs (None when any has none).

    Classifiers: its probabilities are the mean of the members' calibrated probabilities. Segmenting models: its
    outputs are the mean of the members' logits, and its temperature the mean of theirs until it is refitted on
    the ensemble's own validation logits (`kidneyct.experiments.cv_ensemble` does).
    """
    members = [read_checkpoint(p) for p in paths]
    if not members:
        raise ValueError("an ensemble needs at least one member checkpoint")
    first = members[0]
    for path, member in zip(paths, members):
        if (member.classes, member.preprocessing, member.outputs) != (first.classes, first.preprocessing,
                                                                        first.outputs):
            raise CheckpointError(f"{path}: classes, preprocessing or outputs differ from {paths[0]}'s: not one "
                                  "ensemble")
    state = {f"members.{i}.{key}": value for i, m in enumerate(members) for key, value in m.state_dict.items()}
    thresholds = [m.threshold for m in members]
    point = None if any(t is None for t in thresholds) else OperatingPoint(
        sum(thresholds) / len(thresholds), "the mean of the members' thresholds")
    if first.outputs.segmentation is None:
        state["temperatures"] = torch.tensor([m.temperature for m in members])
        calibration = Calibration(1.0, "members are calibrated one by one; the mean needs no more")
    else:
        calibration = Calibration(sum(m.temperature for m in members) / len(members),
                                  "the mean of the members' temperatures (not refitted on the ensemble's logits)")
    ensemble = replace(
        first.weights_only(), state_dict=state, operating_point=point, calibration=calibration,
        members=[Member(m.model, m.temperature, str(path), m.progress.best_epoch) for path, m in zip(paths, members)],
        training=None if first.training is None else replace(first.training,
                                                              progress=replace(first.progress, history=[])))
    return write_checkpoint(ensemble, out)
