"""Inference: the checkpoint's own preprocessing, batched forward passes, calibrated probabilities.

`predict_inputs` is the batch path behind `kidneyct predict` / `kidneyct explain`: it expands files,
folders, DICOM series and NIfTI volumes into slices, runs them through a backend (PyTorch or
onnxruntime) in batches, applies the checkpoint's temperature and tumor threshold, aggregates the
slices of a series or volume into a study result, and optionally writes Grad-CAM overlays.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from kidneyct import DISCLAIMER
from kidneyct.calibrate import decide
from kidneyct.checkpoint import LoadedModel, load_model
from kidneyct.data.catalogue import MASK_MARKER
from kidneyct.data.transforms import Preprocessing
from kidneyct.evaluate.metrics import positive_index
from kidneyct.explain import write_overlay
from kidneyct.io import CTSlice, ImageReadError, file_kind, list_series, read_dicom, read_slices
from kidneyct.runtime import autocast, progress_bar, resolve_device

DEFAULT_TOP_K = 3
AGGREGATION = ("study tumor probability = mean of the {k} highest slice tumor probabilities "
               "(top-k, k = min({top_k}, slices)); tumor when it reaches {threshold:g}; "
               "driving slices = those {k} slices")


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


# ----------------------------------------------------------------------------------------------
# Input expansion


@dataclass(frozen=True)
class InputItem:
    path: Path
    kind: str  # "image" (one file, one or more slices), "series" (DICOM folder) or "volume" (NIfTI)

    @property
    def is_study(self) -> bool:
        return self.kind in ("series", "volume")


def _looks_like_dicom(path: Path) -> bool:
    """Suffix-less files are often DICOM: check the 'DICM' marker after the 128-byte preamble."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _folder_items(folder: Path) -> list[InputItem]:
    items = []
    for current, dirs, names in os.walk(folder):
        dirs.sort()
        dicom_found = False
        for name in sorted(names):
            path = Path(current) / name
            if name.startswith(".") or MASK_MARKER in name.lower():
                continue  # hidden files and phantom lesion masks are no slices
            kind = file_kind(path)
            if kind == "dicom" or (kind is None and not path.suffix and _looks_like_dicom(path)):
                dicom_found = True
            elif kind == "nifti":
                items.append(InputItem(path, "volume"))
            elif kind == "raster":
                items.append(InputItem(path, "image"))
        if dicom_found:  # the DICOM files of one folder form one series
            items.append(InputItem(Path(current), "series"))
    return items


def expand_inputs(inputs) -> tuple[list[InputItem], list[tuple[str, str]]]:
    """Files stay files (NIfTI ones become volumes); folders are walked: each folder holding DICOM
    files is one series, images and volumes beneath are listed one by one. Returns (items, skipped)."""
    items, skipped = [], []
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            found = _folder_items(path)
            if not found:
                skipped.append((str(path), "folder holds no JPG, PNG, DICOM or NIfTI files"))
            items += found
        elif path.exists():
            items.append(InputItem(path, "volume" if file_kind(path) == "nifti" else "image"))
        else:
            skipped.append((str(path), "file not found"))
    return items, skipped


def read_item(item: InputItem) -> tuple[list[CTSlice], list[tuple[str, str]]]:
    """Slices of one input. A series loses only its unreadable files (reported), not the whole study;
    slice indices stay positions in the sorted series."""
    if item.kind != "series":
        return read_slices(item.path), []
    files = list_series(item.path)
    listed = set(files)
    skipped = [(str(p), "not a readable DICOM file") for p in sorted(item.path.iterdir())
               if file_kind(p) == "dicom" and p not in listed]
    slices = []
    for index, file in enumerate(files):
        try:
            ct_slice = read_dicom(file)
        except ImageReadError as error:
            skipped.append((error.path, error.reason))
            continue
        ct_slice.index = index
        slices.append(ct_slice)
    if not slices:
        error = ImageReadError(item.path, "no readable slice in the DICOM series")
        error.skipped = skipped  # each file's own reason still reaches the report
        raise error
    return slices, skipped


# ----------------------------------------------------------------------------------------------
# Results


@dataclass
class SliceResult:
    input: str  # the file, series folder or volume the slice came from
    source: str  # the file holding the slice
    slice_index: int | None  # position in a series or volume
    probabilities: dict[str, float]
    predicted: str
    cam: str | None = None  # Grad-CAM overlay PNG, when asked for


@dataclass
class StudyResult:
    input: str
    kind: str  # "series" or "volume"
    n_slices: int
    tumor_probability: float
    tumor: bool
    threshold: float
    aggregation: str
    driving_slices: list[int]  # the slices the study probability was computed from, in slice order
    positive_slices: list[int]  # every slice called tumor on its own


@dataclass
class BatchPrediction:
    classes: list[str]
    temperature: float
    threshold: float | None
    backend: str
    slices: list[SliceResult] = field(default_factory=list)
    studies: list[StudyResult] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "disclaimer": DISCLAIMER, "backend": self.backend, "classes": self.classes,
            "temperature": self.temperature, "threshold": self.threshold,
            "slices": [asdict(s) for s in self.slices], "studies": [asdict(s) for s in self.studies],
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
        }

    def write(self, out: str | Path) -> list[Path]:
        """JSON (everything in one file) or CSV (slices; studies and skipped files in sidecars)."""
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".json":
            out.write_text(json.dumps(self.to_dict(), indent=2))
            return [out]
        if out.suffix.lower() != ".csv":
            raise ValueError(f"--out must end in .csv or .json, got {out.name}")
        written = [out]
        _write_csv(out, ["input", "source", "slice_index", "predicted", *[f"p_{c}" for c in self.classes], "cam"],
                   [[s.input, s.source, "" if s.slice_index is None else s.slice_index, s.predicted,
                     *[f"{s.probabilities[c]:.6f}" for c in self.classes], s.cam or ""] for s in self.slices])
        if self.studies:
            written.append(_write_csv(
                out.with_suffix(".studies.csv"),
                ["input", "kind", "n_slices", "tumor_probability", "tumor", "threshold", "driving_slices",
                 "positive_slices", "aggregation"],
                [[s.input, s.kind, s.n_slices, f"{s.tumor_probability:.6f}", int(s.tumor), s.threshold,
                  " ".join(map(str, s.driving_slices)), " ".join(map(str, s.positive_slices)), s.aggregation]
                 for s in self.studies]))
        if self.skipped:
            written.append(_write_csv(out.with_suffix(".skipped.csv"), ["path", "reason"], self.skipped))
        return written


def _write_csv(path: Path, header: list[str], rows) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def aggregate_study(tumor_probs: np.ndarray, slice_indices: list[int], threshold: float,
                    top_k: int = DEFAULT_TOP_K) -> tuple[float, bool, list[int], str]:
    """Top-k mean: one confident slice can not make a study positive alone when k > 1, yet a lesion
    seen on a few slices of a long series is not diluted by the many normal ones."""
    tumor_probs = np.asarray(tumor_probs, np.float64)
    k = max(1, min(top_k, len(tumor_probs)))
    top = np.argsort(-tumor_probs, kind="stable")[:k]
    probability = float(tumor_probs[top].mean())
    description = AGGREGATION.format(k=k, top_k=top_k, threshold=threshold)
    return probability, probability >= threshold, sorted(int(slice_indices[i]) for i in top), description


# ----------------------------------------------------------------------------------------------
# The batch path


@dataclass
class _Pending:
    item: InputItem
    slices: list[CTSlice]
    images: np.ndarray  # uint8 [n, S, S]


def _cam_name(item: InputItem, ct_slice: CTSlice, used: set[str]) -> str:
    stem = item.path.name.split(".")[0] if item.kind != "series" else item.path.name
    if ct_slice.index is not None and item.is_study:
        stem += f".slice-{ct_slice.index:04d}"
    name, number = f"{stem}.cam.png", 2
    while name in used:  # same file name in two folders
        name, number = f"{stem}-{number}.cam.png", number + 1
    used.add(name)
    return name


def open_backend(checkpoint: str | Path, backend: str = "torch", device: str = "auto", with_cam: bool = False,
                 cam_layer: str | None = None):
    """(backend, explainer or None). An .onnx file runs in onnxruntime; a .pt checkpoint in PyTorch, or in
    onnxruntime after an export on the fly. Grad-CAM always needs the PyTorch checkpoint."""
    from kidneyct.export import OnnxPredictor, export_onnx

    path = Path(checkpoint)
    if path.suffix.lower() == ".onnx":
        if with_cam:
            raise ValueError("Grad-CAM needs the PyTorch checkpoint (.pt), not an ONNX export")
        return OnnxPredictor(path), None
    if backend not in ("torch", "onnx"):
        raise ValueError(f"unknown backend {backend!r}; choose torch or onnx")
    predictor = Predictor.from_checkpoint(path, device)
    explainer = None
    if with_cam:
        from kidneyct.explain import GradCamExplainer

        explainer = GradCamExplainer.from_loaded(predictor.loaded, cam_layer, predictor.device)
    if backend == "onnx":
        with tempfile.TemporaryDirectory() as folder:  # the session keeps the model in memory
            return OnnxPredictor(export_onnx(path, Path(folder) / "model.onnx")), explainer
    return predictor, explainer


def predict_inputs(backend: Backend, inputs, batch_size: int = 64, top_k: int = DEFAULT_TOP_K,
                   threshold: float | None = None, cam_dir: str | Path | None = None, explainer=None,
                   progress: bool = True) -> BatchPrediction:
    """Predict every slice of every input; studies for series and volumes; CAM overlays when `cam_dir`.

    `threshold` overrides the backend's (the checkpoint's) tumor threshold. Unreadable inputs are
    recorded in `skipped` and the batch goes on.
    """
    threshold = backend.threshold if threshold is None else threshold
    classes = backend.classes
    pos = positive_index(classes)
    result = BatchPrediction(classes, backend.temperature, threshold, getattr(backend, "name", "torch"))
    items, result.skipped = expand_inputs(inputs)
    if cam_dir is not None:
        if explainer is None:
            raise ValueError("Grad-CAM overlays need the PyTorch model (an explainer)")
        cam_dir = Path(cam_dir)
        cam_dir.mkdir(parents=True, exist_ok=True)
    used_names: set[str] = set()
    pending: list[_Pending] = []

    def flush():
        if not pending:
            return
        images = np.concatenate([p.images for p in pending])
        probs = backend.probabilities_from_logits(backend.logits_uint8(images, batch_size))
        decisions = decide(probs, classes, threshold)
        cams = explainer.heatmaps(images, decisions) if cam_dir is not None else None
        row = 0
        for entry in pending:
            for ct_slice in entry.slices:
                cam_path = None
                if cams is not None:
                    cam_path = cam_dir / _cam_name(entry.item, ct_slice, used_names)
                    write_overlay(images[row], cams[row], classes[decisions[row]],
                                  float(probs[row, decisions[row]]), cam_path, ct_slice.source)
                result.slices.append(SliceResult(
                    str(entry.item.path), ct_slice.source, ct_slice.index,
                    dict(zip(classes, map(float, probs[row]))), classes[decisions[row]],
                    str(cam_path) if cam_path else None))
                row += 1
        pending.clear()

    buffered = 0
    for item in progress_bar(items, progress, desc="predict", unit="input"):
        try:
            slices, partial = read_item(item)
        except ImageReadError as error:
            result.skipped += getattr(error, "skipped", [])
            result.skipped.append((error.path, error.reason))
            continue
        result.skipped += partial
        images = np.stack([backend.preprocessing.to_uint8(s) for s in slices])
        pending.append(_Pending(item, slices, images))
        buffered += len(slices)
        if buffered >= batch_size:
            flush()
            buffered = 0
    flush()

    if pos is not None:
        by_input: dict[str, list[SliceResult]] = {}
        for s in result.slices:
            by_input.setdefault(s.input, []).append(s)
        cut = 0.5 if threshold is None else threshold
        for item in items:
            rows = by_input.get(str(item.path))
            if not item.is_study or not rows:
                continue
            tumor = np.array([r.probabilities[classes[pos]] for r in rows])
            indices = [r.slice_index for r in rows]
            probability, called, driving, description = aggregate_study(tumor, indices, cut, top_k)
            result.studies.append(StudyResult(
                str(item.path), item.kind, len(rows), probability, called, cut, description, driving,
                [r.slice_index for r in rows if r.predicted == classes[pos]]))
    return result
