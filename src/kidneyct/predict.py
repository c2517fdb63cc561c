"""Inference: the checkpoint's own preprocessing, batched forward passes, calibrated probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from kidneyct.checkpoint import LoadedModel, load_model
from kidneyct.data.transforms import Preprocessing
from kidneyct.io import CTSlice, read_slices
from kidneyct.runtime import autocast, resolve_device


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
            outputs.append(model(batch).float().cpu())
    if not outputs:
        return torch.zeros((0, 0))
    return torch.cat(outputs)


def to_slice(item) -> list[CTSlice]:
    """Paths, PIL images, arrays and CTSlices to CTSlices.

    Arrays: integer arrays are display images (uint8 0-255, uint16 0-65535); float arrays are
    Hounsfield units and go through the checkpoint's window.
    """
    if isinstance(item, CTSlice):
        return [item]
    if isinstance(item, (str, Path)):
        return read_slices(item)
    if isinstance(item, Image.Image):
        item = np.asarray(item.convert("L") if item.mode not in ("L", "I;16", "I") else item)
    if isinstance(item, np.ndarray):
        if item.ndim == 3 and item.shape[-1] in (3, 4):
            item = item[..., :3].mean(-1).astype(item.dtype)
        if item.ndim != 2:
            raise ValueError(f"expected a 2-D slice, got array of shape {item.shape}")
        if np.issubdtype(item.dtype, np.integer):
            scale = 65535.0 if item.dtype.itemsize > 1 else 255.0
            return [CTSlice(item.astype(np.float32) / scale, hu=False, source="<array>")]
        return [CTSlice(item.astype(np.float32), hu=True, source="<array>")]
    raise TypeError(f"cannot predict on {type(item).__name__}; give a path, PIL image, array or CTSlice")


class Predictor:
    """``kidneyct.load(checkpoint)``: class probabilities for slices, files or arrays."""

    def __init__(self, loaded: LoadedModel, device: str | torch.device = "cpu"):
        self.loaded = loaded
        self.device = torch.device(device)
        self.model = loaded.model.to(self.device)
        self.model = self.model.to(memory_format=torch.channels_last)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> "Predictor":
        device = resolve_device(device)
        return cls(load_model(path, device), device)

    @property
    def classes(self) -> list[str]:
        return self.loaded.classes

    @property
    def preprocessing(self) -> Preprocessing:
        return self.loaded.preprocessing

    def probabilities_from_logits(self, logits: torch.Tensor) -> np.ndarray:
        """Softmax of temperature-scaled logits (temperature 1 until calibration is fitted)."""
        return torch.softmax(logits / self.loaded.temperature, dim=1).numpy()

    def predict_uint8(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        logits = predict_logits(self.model, self.preprocessing, images, batch_size, self.device)
        return self.probabilities_from_logits(logits)

    def predict_slices(self, slices: list[CTSlice], batch_size: int = 256) -> np.ndarray:
        images = np.stack([self.preprocessing.to_uint8(s) for s in slices])
        return self.predict_uint8(images, batch_size)

    def predict(self, image_or_path) -> dict[str, float] | list[dict[str, float]]:
        """{class: probability} for one slice; a list of them for a multi-slice volume or series."""
        slices = to_slice(image_or_path)
        probabilities = self.predict_slices(slices)
        results = [dict(zip(self.classes, map(float, row))) for row in probabilities]
        return results[0] if len(results) == 1 else results
