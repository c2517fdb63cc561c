"""The predictor behind ``kidneyct.load``: a checkpoint's model with its own preprocessing, calibrated
probabilities for slices, files or arrays, in PyTorch or (an exported model) in onnxruntime, behind one
interface."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from kidneyct.errors import CheckpointError
from kidneyct.inference.export import INPUT_NAME, METADATA_KEY, OUTPUT_NAME
from kidneyct.io import CTSlice, read_slices
from kidneyct.models.checkpoint import LoadedModel, check_calibration, load_model
from kidneyct.models.forward import flip_averaged, penultimate_features, predict_logits
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


class Backend(ABC):
    """A checkpoint's model behind one interface, in PyTorch (`Predictor`) or onnxruntime (`OnnxPredictor`).
    A backend only turns uint8 images into logits; reading, temperature and probabilities are shared here."""

    name: str
    classes: list[str]
    preprocessing: Preprocessing
    temperature: float
    threshold: float | None

    @abstractmethod
    def logits_uint8(self, images: np.ndarray, batch_size: int = 256) -> torch.Tensor:
        """Logits [N, K] (float32, CPU) for uint8 images [N, S, S] at the model's size, flip TTA included
        when the preprocessing asks for it."""

    @property
    @abstractmethod
    def stored(self) -> dict:
        """What the checkpoint (or the export's metadata) records beyond the weights: the study rule, the scope
        gate's statistics and the intensity profile among them."""

    def features_uint8(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray | None:
        """Penultimate features [N, D] for the scope gate; None when this backend cannot give them."""
        return None

    def probabilities_from_logits(self, logits: torch.Tensor) -> np.ndarray:
        """Softmax of temperature-scaled logits (temperature 1 until calibration is fitted)."""
        return torch.softmax(logits / self.temperature, dim=1).numpy()

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


class Predictor(Backend):
    """``kidneyct.load(checkpoint)``: class probabilities for slices, files or arrays, in PyTorch."""

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

    @property
    def stored(self) -> dict:
        return self.loaded.payload

    def logits_uint8(self, images: np.ndarray, batch_size: int = 256) -> torch.Tensor:
        return predict_logits(self.model, self.preprocessing, images, batch_size, self.device)

    def features_uint8(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray | None:
        return penultimate_features(self.model, self.preprocessing, images, batch_size, self.device)


class OnnxPredictor(Backend):
    """An exported model (`kidneyct export`) in an onnxruntime session; its preprocessing, temperature and
    threshold come from the metadata the export embeds."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort  # imported here for start-up speed: only the ONNX backend needs it

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: ONNX model not found")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:
            raise CheckpointError(f"{path}: not a loadable ONNX model ({type(error).__name__}: {error})") from None
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if raw is None:
            raise CheckpointError(f"{path}: no kidneyct metadata; export it with `kidneyct export`")
        self.path = path
        try:
            self.metadata = json.loads(raw)
            self.classes: list[str] = list(self.metadata["classes"])
            self.preprocessing = Preprocessing.from_dict(self.metadata["preprocessing"])
            self.temperature = float(self.metadata["calibration"].get("temperature", 1.0))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise CheckpointError(f"{path}: malformed kidneyct metadata ({type(error).__name__}: {error})") from None
        self.threshold: float | None = self.metadata.get("threshold")
        check_calibration(path, self.classes, self.temperature, self.threshold)

    @property
    def stored(self) -> dict:
        return self.metadata

    def _run(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run([OUTPUT_NAME], {INPUT_NAME: batch.numpy()})[0])

    def logits_uint8(self, images: np.ndarray, batch_size: int = 256) -> torch.Tensor:
        prep = self.preprocessing
        outputs = [flip_averaged(self._run, prep.batch_to_tensor(images[start:start + batch_size]), prep.tta_hflip)
                   for start in range(0, len(images), batch_size)]
        return torch.cat(outputs) if outputs else torch.zeros((0, len(self.classes)))
