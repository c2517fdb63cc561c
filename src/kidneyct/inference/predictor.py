"""The predictor behind ``kidneyct.load``: a checkpoint's model (PyTorch or onnxruntime) with the settings of
its decisions. `predict` and `run` give the StudyResults of kidneyct.inference.run, the one prediction path
that the command line, the web API and the DICOM node call as well."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from kidneyct.checkpoint import Checkpoint
from kidneyct.inference.backends import Backend, TorchBackend, open_backend
from kidneyct.inference.results import ModelSummary, StudyResult
from kidneyct.inference.scope import InputJudge
from kidneyct.io import CTSlice, InputItem
from kidneyct.io.budget import DEFAULT_MAX_DECODED_BYTES
from kidneyct.preprocess import Preprocessing
from kidneyct.study.rule import StudyRule
from kidneyct.weights import shipped_checkpoint


@dataclass(frozen=True)
class PredictOptions:
    """How a predictor decides and reads; every field's default is the checkpoint's own choice."""

    threshold: float | None = None  # overrides the checkpoint's tumor threshold
    top_k: int | None = None  # overrides the study rule: the mean of the k highest in-scope slices
    batch_size: int = 64  # slices per forward pass
    workers: int | None = None  # processes reading inputs while the model runs (None: one per core; 0: none)
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES  # one input's decoded-size budget (kidneyct.io.budget)
    heatmaps: str | None = None  # write a heatmap overlay PNG per slice here (Grad-CAM: PyTorch only; a segmenting
    #                              model's: its tumor map)
    cam_layer: str | None = None  # the Grad-CAM target layer (default: the model's)
    progress: bool = False  # a progress bar on terminals
    masks: str | None = None  # segmenting models: write label masks (0 background, 1 kidney, 2 tumor) into this folder
    dicom_seg: str | None = None  # segmenting models: a DICOM SEG per DICOM series, under <folder>/<StudyInstanceUID>/


class Predictor:
    """``kidneyct.load(checkpoint)``: StudyResults for images, folders, DICOM series, NIfTI volumes and arrays.

    Args:
        backend: the model (kidneyct.inference.backends).
        options: how it decides and reads (PredictOptions).
    """

    def __init__(self, backend: Backend, options: PredictOptions = PredictOptions()):
        self.backend, self.options = backend, options
        self.judge = InputJudge(self.checkpoint.study, self.preprocessing, self.checkpoint.outputs)
        self._explainer = None

    @classmethod
    def open(cls, checkpoint: str | Path | None = None, device: str = "auto", backend: str = "torch",
             options: PredictOptions = PredictOptions()) -> "Predictor":
        """A checkpoint (.pt) or export (.onnx); None: the model shipped with kidneyct (its ONNX export when the
        onnx backend is asked for)."""
        if checkpoint is None:
            checkpoint = shipped_checkpoint(onnx=backend == "onnx")
        return cls(open_backend(checkpoint, backend, device), options)

    def with_options(self, **changes) -> "Predictor":
        """The same model with other options (sharing its backend)."""
        other = Predictor(self.backend, replace(self.options, **changes))
        other._explainer = self._explainer
        return other

    @property
    def checkpoint(self) -> Checkpoint:
        return self.backend.checkpoint

    @property
    def classes(self) -> list[str]:
        return self.checkpoint.classes

    @property
    def preprocessing(self) -> Preprocessing:
        return self.checkpoint.preprocessing

    @property
    def temperature(self) -> float:
        return self.checkpoint.temperature

    @property
    def threshold(self) -> float | None:
        return self.checkpoint.threshold if self.options.threshold is None else self.options.threshold

    @property
    def rule(self) -> StudyRule:
        return self.checkpoint.study.rule if self.options.top_k is None else StudyRule("top_k", k=self.options.top_k)

    @property
    def device(self):
        """The PyTorch device (None for onnxruntime)."""
        return getattr(self.backend, "device", None)

    def summary(self) -> ModelSummary:
        return ModelSummary(self.checkpoint.model.name, self.backend.source.name, self.backend.name, self.classes,
                            self.temperature, self.threshold, self.rule.to_dict())

    def logits(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Logits [N, K] for uint8 model inputs [N, S, S] (what evaluation scores decoded datasets with)."""
        return self.backend.logits(images, batch_size)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Softmax of temperature-scaled logits, in float64."""
        scaled = np.asarray(logits, np.float64) / self.temperature
        scaled -= scaled.max(axis=1, keepdims=True)
        exp = np.exp(scaled)
        return exp / exp.sum(axis=1, keepdims=True)

    def probabilities_of(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Calibrated probabilities [N, K] for uint8 model inputs [N, S, S]."""
        return self.probabilities(self.logits(images, batch_size))

    def explainer(self):
        """The heatmaps of this model, built on first use: a segmenting model's own tumor map (either backend;
        Grad-CAM when a cam_layer is given), else Grad-CAM (PyTorch only)."""
        if self._explainer is None and self.backend.segmenting and self.options.cam_layer is None:
            from kidneyct.inference.segmented import TumorMapExplainer

            self._explainer = TumorMapExplainer(self.backend)
        if self._explainer is not None:
            return self._explainer
        if not isinstance(self.backend, TorchBackend):
            raise ValueError("Grad-CAM needs the PyTorch checkpoint (.pt) and the torch backend, not an ONNX model")
        if self._explainer is None:
            from kidneyct.inference.explain import GradCamExplainer  # imported here: only heatmaps need it

            self._explainer = GradCamExplainer.from_loaded(self.backend.loaded, self.options.cam_layer,
                                                           self.backend.device)
        return self._explainer

    def run(self, inputs) -> Iterator[StudyResult]:
        """One StudyResult per input, in order (see kidneyct.inference.run.run)."""
        from kidneyct.inference.run import run

        return run(self, inputs)

    def predict(self, item) -> StudyResult:
        """The StudyResult of one input: an image, DICOM series or NIfTI file or folder, a PIL image, a 2-D
        array (integers: display grey levels; floats: Hounsfield units) or a CTSlice."""
        results = list(self.run([item]))
        if len(results) != 1:
            raise ValueError(f"{item} holds {len(results)} inputs; predict takes one: use Predictor.run")
        return results[0]


def as_input(item) -> str | Path | InputItem:
    """Paths stay paths; PIL images, arrays and CTSlices become an in-memory image input."""
    if isinstance(item, (str, Path, InputItem)):
        return item
    ct_slice = to_slice(item)
    return InputItem(Path(ct_slice.source), "image", slices=(ct_slice,))


def to_slice(item) -> CTSlice:
    """A PIL image, array or CTSlice as a CTSlice. Integer arrays are display images (uint8 0-255, uint16
    0-65535); float arrays are Hounsfield units and go through the checkpoint's window."""
    if isinstance(item, CTSlice):
        return item
    if isinstance(item, Image.Image):
        item = np.asarray(item.convert("L") if item.mode not in ("L", "I;16", "I") else item)
    if not isinstance(item, np.ndarray):
        raise TypeError(f"cannot predict on {type(item).__name__}; give a path, PIL image, array or CTSlice")
    if item.ndim == 3 and item.shape[-1] in (3, 4):
        item = item[..., :3].mean(-1).astype(item.dtype)
    if item.ndim != 2:
        raise ValueError(f"expected a 2-D slice, got array of shape {item.shape}")
    if np.issubdtype(item.dtype, np.integer):
        scale = 65535.0 if item.dtype.itemsize > 1 else 255.0
        return CTSlice(item.astype(np.float32) / scale, hu=False, source="<array>")
    return CTSlice(item.astype(np.float32), hu=True, source="<array>")
