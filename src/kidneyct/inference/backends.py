"""A checkpoint's model behind one interface, in PyTorch (`TorchBackend`) or onnxruntime (`OnnxBackend`): uint8
model inputs in, numpy logits (and the scope gate's features) out. Everything around the forward pass (reading,
scope, calibration, decisions, study calls) is the same for both and lives in kidneyct.inference.run.

The ONNX backend needs no torch: its preprocessing, flip TTA and softmax are numpy, and its checkpoint records
come from the export's metadata."""

from __future__ import annotations

import json
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kidneyct.checkpoint import FORMAT, Checkpoint
from kidneyct.errors import CheckpointError

METADATA_KEY = "kidneyct"
INPUT_NAME, OUTPUT_NAME, FEATURES_NAME = "image", "logits", "features"
BACKENDS = ("torch", "onnx")


@dataclass
class ModelOutput:
    """One forward pass. maps: the per-pixel maps a segmenting model outputs beside its logits ([N, M, S, S], in
    `checkpoint.outputs.maps` order); None for a slice classifier."""

    logits: np.ndarray  # [N, K] float32
    features: np.ndarray | None = None  # [N, D] what the final Linear layer sees; None when not asked or not given
    maps: np.ndarray | None = None


class Backend(ABC):
    name: str
    checkpoint: Checkpoint  # an export's metadata holds it without the weights
    source: Path  # the file it was loaded from

    @abstractmethod
    def logits(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Logits [N, K] (float32) for uint8 images [N, S, S] at the model's size, flip TTA included when the
        preprocessing asks for it."""

    def features(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray | None:
        """Penultimate features [N, D] for the scope gate; None when this backend cannot give them."""
        return None

    def forward(self, images: np.ndarray, batch_size: int = 256, features: np.ndarray | None = None) -> ModelOutput:
        """Logits of `images`, and the features of `images[features]` (a boolean mask) when given."""
        wanted = None
        if features is not None and features.any():
            wanted = self.features(images[features], batch_size)
        return ModelOutput(self.logits(images, batch_size), wanted)


class TorchBackend(Backend):
    """A .pt checkpoint in PyTorch on `device`."""

    name = "torch"

    def __init__(self, loaded, device, source: str | Path):
        import torch

        self.loaded, self.checkpoint, self.source = loaded, loaded.checkpoint, Path(source)
        self.device = torch.device(device)
        self.model = loaded.model.to(self.device).to(memory_format=torch.channels_last)

    @classmethod
    def open(cls, path: str | Path, device: str = "auto") -> "TorchBackend":
        from kidneyct.checkpoint.model import load_model
        from kidneyct.runtime import resolve_device

        device = resolve_device(device)
        return cls(load_model(path, device), device, path)

    def logits(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        from kidneyct.models.forward import predict_logits

        return predict_logits(self.model, self.checkpoint.preprocessing, images, batch_size, self.device).numpy()

    def features(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray | None:
        from kidneyct.models.forward import penultimate_features

        return penultimate_features(self.model, self.checkpoint.preprocessing, images, batch_size, self.device)


class OnnxBackend(Backend):
    """An exported model (`kidneyct export`) in an onnxruntime session; its records come from the metadata the
    export embeds. Exports with a features output give the scope gate its features, as PyTorch does."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort  # imported here for start-up speed: only the ONNX backend needs it

        self.source = path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: ONNX model not found")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:
            raise CheckpointError(f"{path}: not a loadable ONNX model ({type(error).__name__}: {error})") from None
        self.checkpoint = _metadata_checkpoint(self.session, path)
        self.has_features = FEATURES_NAME in {o.name for o in self.session.get_outputs()}

    def _run(self, batch: np.ndarray, names: list[str]) -> list[np.ndarray]:
        return self.session.run(names, {INPUT_NAME: batch})

    def logits(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        prep, outputs = self.checkpoint.preprocessing, []
        for start in range(0, len(images), batch_size):
            batch = prep.standardised(images[start:start + batch_size])
            logits = self._run(batch, [OUTPUT_NAME])[0].astype(np.float32)
            if prep.tta_hflip:  # the mean logits of the slice and its mirror image, as in PyTorch
                logits = (logits + self._run(np.ascontiguousarray(batch[..., ::-1]), [OUTPUT_NAME])[0]) / 2
            outputs.append(logits)
        return np.concatenate(outputs) if outputs else np.zeros((0, len(self.checkpoint.classes)), np.float32)

    def features(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray | None:
        if not self.has_features:
            return None
        prep = self.checkpoint.preprocessing
        return np.concatenate([self._run(prep.standardised(images[s:s + batch_size]), [FEATURES_NAME])[0]
                               for s in range(0, len(images), batch_size)])


def _metadata_checkpoint(session, path: Path) -> Checkpoint:
    raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if raw is None:
        raise CheckpointError(f"{path}: no kidneyct metadata; export it with `kidneyct export`")
    try:
        metadata = json.loads(raw)
    except ValueError as error:
        raise CheckpointError(f"{path}: malformed kidneyct metadata ({type(error).__name__}: {error})") from None
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: malformed kidneyct metadata (not a JSON object)")
    # Exports of the first checkpoint schema carry no format marker.
    return Checkpoint.from_payload({"format": FORMAT, **metadata}, path)


def open_backend(checkpoint: str | Path, backend: str = "torch", device: str = "auto") -> Backend:
    """An .onnx file in onnxruntime; a .pt checkpoint in PyTorch, or (backend "onnx") in onnxruntime after an
    export on the fly."""
    path = Path(checkpoint)
    if path.suffix.lower() == ".onnx":
        return OnnxBackend(path)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend == "onnx":
        from kidneyct.inference.export import export_onnx

        with tempfile.TemporaryDirectory() as folder:  # the session keeps the model in memory
            opened = OnnxBackend(export_onnx(path, Path(folder) / "model.onnx"))
        opened.source = path
        return opened
    return TorchBackend.open(path, device)
