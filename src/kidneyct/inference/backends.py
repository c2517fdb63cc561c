"""A checkpoint's model behind one interface, in PyTorch (`TorchBackend`) or onnxruntime (`OnnxBackend`): uint8
model inputs in, numpy logits (and the scope gate's features) out. Everything around the forward pass (reading,
scope, calibration, decisions, study calls) is the same for both and lives in kidneyct.inference.run.

A segmenting checkpoint (`checkpoint.outputs.segmentation`) is run by both backends through the same two looks
(kidneyct.models.look_twice: an overview of the body view, then a zoom on each kidney it found), the model or the
ONNX session being the looks' runner: its slice logits come from `slice_logits` (the checkpoint's
`outputs.slice_probability`), and its kidney and tumor probability maps on the body view's grid come with them.

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
from kidneyct.labels import positive_index

METADATA_KEY = "kidneyct"
INPUT_NAME, OUTPUT_NAME, FEATURES_NAME, MAPS_NAME = "image", "logits", "features", "maps"
BACKENDS = ("torch", "onnx")


@dataclass
class ModelOutput:
    """One forward pass. maps: the probability maps a segmenting model draws beside its logits ([N, M, S, S] on the
    body view's grid, in `checkpoint.outputs.maps` order); None for a slice classifier. kidney_fraction: the share
    of each view its overview calls kidney [N] (the scope gate of a segmenting model); None for a classifier."""

    logits: np.ndarray  # [N, K] float32
    features: np.ndarray | None = None  # [N, D] what the final Linear layer sees; None when not asked or not given
    maps: np.ndarray | None = None
    kidney_fraction: np.ndarray | None = None


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

    @property
    def segmenting(self) -> bool:
        """Whether the checkpoint is a segmenting model, run through its two looks."""
        return self.checkpoint.outputs.segmentation is not None

    def runner(self):
        """The look_twice runner of a segmenting model: crops [B, 1, S, S] in [0, 1] -> (logits, map logits)."""
        raise NotImplementedError(f"the {self.name} backend cannot run a segmenting model")

    def looked(self, images: np.ndarray, batch_size: int = 32, with_maps: bool = True) -> ModelOutput:
        """A segmenting model's output for uint8 body views [N, V, V]: both looks, the slice logits as the
        checkpoint takes them, and (with_maps) the kidney and tumor probability maps on the views' grid."""
        from kidneyct.models.look_twice import look_twice, slice_logits  # scipy: only segmenting models need it

        outputs = self.checkpoint.outputs
        segmentation, tumor = outputs.segmentation, positive_index(self.checkpoint.classes)
        if tumor is None:
            raise CheckpointError(f"{self.source}: a segmenting model needs a tumor class, has {self.checkpoint.classes}")
        looks = look_twice(self.runner(), np.asarray(images), segmentation.zoom, segmentation.work_size, tumor,
                           with_maps, batch_size=max(1, min(batch_size, 32)), mirror=segmentation.mirror)
        maps = None if looks.maps is None else looks.maps.astype(np.float32, copy=False)
        return ModelOutput(slice_logits(looks, outputs.slice_probability, tumor).astype(np.float32), None, maps,
                           np.asarray(looks.kidney_fraction, np.float64))

    def forward(self, images: np.ndarray, batch_size: int = 256, features: np.ndarray | None = None) -> ModelOutput:
        """Logits of `images`, and the features of `images[features]` (a boolean mask) when given; for a
        segmenting model its looks (maps and kidney shares included; it has no features)."""
        if self.segmenting:
            return self.looked(images, batch_size)
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

        if self.segmenting:
            return self.looked(images, batch_size, with_maps=False).logits
        return predict_logits(self.model, self.checkpoint.preprocessing, images, batch_size, self.device).numpy()

    def runner(self):
        from kidneyct.models.forward import segment_runner

        return segment_runner(self.model, self.device)

    def features(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray | None:
        from kidneyct.models.forward import penultimate_features

        if self.segmenting:
            return None
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

    def runner(self):
        names = [o.name for o in self.session.get_outputs()]
        if MAPS_NAME not in names:
            raise CheckpointError(f"{self.source}: a segmenting model's export needs a {MAPS_NAME!r} output; export "
                                  "it again with `kidneyct export`")

        def run(crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            logits, maps = self._run(np.ascontiguousarray(crops, np.float32), [OUTPUT_NAME, MAPS_NAME])
            return logits.astype(np.float32), maps.astype(np.float32)

        return run

    def logits(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        if self.segmenting:
            return self.looked(images, batch_size, with_maps=False).logits
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
