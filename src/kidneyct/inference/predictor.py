"""The predictor behind ``kidneyct.load``: a checkpoint's model with its own preprocessing, calibrated
probabilities for slices, files or arrays; and the interface the batch path needs from any backend."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from kidneyct.io import CTSlice, read_slices
from kidneyct.models.checkpoint import LoadedModel, load_model
from kidneyct.models.forward import predict_logits
from kidneyct.preprocess import Preprocessing
from kidneyct.runtime import resolve_device


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


class Backend(Protocol):
    """What the batch path needs from a model: PyTorch (`Predictor`) and onnxruntime (`OnnxPredictor`)."""

    name: str
    classes: list[str]
    preprocessing: Preprocessing
    temperature: float
    threshold: float | None

    def logits_uint8(self, images: np.ndarray, batch_size: int = 256) -> torch.Tensor: ...

    def probabilities_from_logits(self, logits: torch.Tensor) -> np.ndarray: ...


class Predictor:
    """``kidneyct.load(checkpoint)``: class probabilities for slices, files or arrays."""

    name = "torch"

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

    @property
    def temperature(self) -> float:
        return self.loaded.temperature

    @property
    def threshold(self) -> float | None:
        return self.loaded.threshold

    def probabilities_from_logits(self, logits: torch.Tensor) -> np.ndarray:
        """Softmax of temperature-scaled logits (temperature 1 until calibration is fitted)."""
        return torch.softmax(logits / self.loaded.temperature, dim=1).numpy()

    def logits_uint8(self, images: np.ndarray, batch_size: int = 256) -> torch.Tensor:
        return predict_logits(self.model, self.preprocessing, images, batch_size, self.device)

    def predict_uint8(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        return self.probabilities_from_logits(self.logits_uint8(images, batch_size))

    def predict_slices(self, slices: list[CTSlice], batch_size: int = 256) -> np.ndarray:
        images = np.stack([self.preprocessing.to_uint8(s) for s in slices])
        return self.predict_uint8(images, batch_size)

    def predict(self, image_or_path) -> dict[str, float] | list[dict[str, float]]:
        """{class: probability} for one slice; a list of them for a multi-slice volume or series."""
        slices = to_slice(image_or_path)
        probabilities = self.predict_slices(slices)
        results = [dict(zip(self.classes, map(float, row))) for row in probabilities]
        return results[0] if len(results) == 1 else results
