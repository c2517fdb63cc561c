"""Batched forward passes with a checkpoint's preprocessing: uint8 images in, logits out. Shared by training
(validation) and inference, so both see exactly the same standardisation, memory layout and flip TTA."""

from __future__ import annotations

import numpy as np
import torch

from kidneyct.preprocess import Preprocessing
from kidneyct.runtime import autocast


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, prep: Preprocessing, images: np.ndarray | torch.Tensor,
                   batch_size: int = 256, device: str | torch.device = "cpu") -> torch.Tensor:
    """Logits [N, K] (float32, on the CPU) for uint8 images [N, S, S] already at the model's size."""
    device = torch.device(device)
    model.eval()
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = prep.batch_to_tensor(images[start:start + batch_size], device)
        batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast(device):
            logits = model(batch).float()
            if prep.tta_hflip:
                logits = (logits + model(batch.flip(-1)).float()) / 2
            outputs.append(logits.cpu())
    if not outputs:
        return torch.zeros((0, 0))
    return torch.cat(outputs)
