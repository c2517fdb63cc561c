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
