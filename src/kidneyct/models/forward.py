"""Batched forward passes with a checkpoint's preprocessing: uint8 images in, logits out. Shared by training
(validation) and inference, so both see exactly the same standardisation, memory layout and flip TTA."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from kidneyct.preprocess import Preprocessing, to_unit_tensor
from kidneyct.runtime import autocast


def flip_averaged(run: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor, hflip: bool) -> torch.Tensor:
    """Float logits `run(batch)`; with `hflip` (test-time augmentation) averaged with those of the batch's
    left-right mirror image. `run` is the model itself or an onnxruntime session's call."""
    logits = run(batch).float()
    if hflip:
        logits = (logits + run(batch.flip(-1)).float()) / 2
    return logits


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, prep: Preprocessing, images: np.ndarray | torch.Tensor,
                   batch_size: int = 256, device: str | torch.device = "cpu") -> torch.Tensor:
    """Logits [N, K] (float32, on the CPU) for uint8 images [N, S, S] already at the model's size."""
    device = torch.device(device)
    model.eval()
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = prep.model_input(to_unit_tensor(images[start:start + batch_size], device))
        with autocast(device):
            outputs.append(flip_averaged(model, batch, prep.tta_hflip).cpu())
    if not outputs:
        return torch.zeros((0, 0))
    return torch.cat(outputs)


def last_linear(model: torch.nn.Module) -> torch.nn.Linear | None:
    """The classifier's final Linear layer (every registered model ends in one), None for an ensemble,
    whose members each have their own."""
    if hasattr(model, "members"):
        return None
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    return linears[-1] if linears else None


@torch.inference_mode()
def penultimate_features(model: torch.nn.Module, prep: Preprocessing, images: np.ndarray,
                         batch_size: int = 256, device: str | torch.device = "cpu") -> np.ndarray | None:
    """What the final Linear layer sees for uint8 images [N, S, S]: float32 [N, D], the model's own summary
    of each slice (D = 128 for every registered head). None for a model without one (an ensemble)."""
    layer = last_linear(model)
    if layer is None:
        return None
    device = torch.device(device)
    model.eval()
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0].float().cpu()))
    try:
        for start in range(0, len(images), batch_size):
            batch = prep.model_input(to_unit_tensor(images[start:start + batch_size], device))
            with autocast(device):
                model(batch)
    finally:
        handle.remove()
    return torch.cat(captured).numpy() if captured else np.zeros((0, layer.in_features), np.float32)


def segment_runner(model: torch.nn.Module, device: str | torch.device = "cpu"):
    """A `kidneyct.models.look_twice` runner for a PyTorch segmenting model: crops [B, 1, S, S] float32 in
    [0, 1] -> (slice logits [B, K], map logits [B, M, S, S]), numpy float32."""
    device = torch.device(device)

    @torch.inference_mode()
    def run(crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        model.eval()
        batch = torch.from_numpy(np.ascontiguousarray(crops, np.float32)).to(device)
        logits, maps = model.segment(batch.contiguous(memory_format=torch.channels_last))
        return logits.float().cpu().numpy(), maps.float().cpu().numpy()

    return run
