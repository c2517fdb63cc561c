"""The batch path behind `kidneyct predict` / `kidneyct explain`: expand files, folders, DICOM series and
NIfTI volumes into slices, run them through a backend (PyTorch or onnxruntime) in batches, apply the
checkpoint's temperature and tumor threshold, judge each slice's scope (kidneyct.inference.scope) and each
input's intensities, call each series or volume by the checkpoint's study rule over its in-scope slices, and
optionally write Grad-CAM overlays. Results are written as CSV (with sidecars) or JSON.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from kidneyct.about import DISCLAIMER
from kidneyct.inference.predictor import Backend, OnnxPredictor, Predictor
from kidneyct.inference.pipeline import failure_reason, prepared_inputs
from kidneyct.inference.scope import InputJudge
from kidneyct.inference.study import StudyRule, call_study, rule_of
from kidneyct.io import CTSlice, InputItem, expand_inputs
from kidneyct.io.atomic import atomic_write
from kidneyct.io.budget import DEFAULT_MAX_DECODED_BYTES
from kidneyct.labels import decide, positive_index
from kidneyct.runtime import progress_bar


@dataclass
class SliceResult:
    input: str  # the file, series folder or volume the slice came from
    source: str  # the file holding the slice
    slice_index: int | None  # position in a series or volume
    probabilities: dict[str, float]
    predicted: str  # the model's class; a call only when the slice is in scope
    cam: str | None = None  # Grad-CAM overlay PNG, when asked for
    in_scope: bool | None = None  # may this slice drive a call (see kidneyct.inference.scope)
    scope_reason: str = ""
    warnings: list[str] = field(default_factory=list)  # an image's own intensity warnings (studies: StudyResult)


@dataclass
class StudyResult:
    input: str
    kind: str  # "series" or "volume"
    n_slices: int
    tumor_probability: float | None  # None: no slice in scope, no call
    tumor: bool | None
    threshold: float
    aggregation: str
    driving_slices: list[int]  # the slices the study probability was computed from, in slice order
    positive_slices: list[int]  # every in-scope slice called tumor on its own
    in_scope_slices: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class BatchPrediction:
    classes: list[str]
    temperature: float
    threshold: float | None
    backend: str
    study_rule: dict = field(default_factory=dict)
    slices: list[SliceResult] = field(default_factory=list)
    studies: list[StudyResult] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "disclaimer": DISCLAIMER, "backend": self.backend, "classes": self.classes,
            "temperature": self.temperature, "threshold": self.threshold, "study_rule": self.study_rule,
            "slices": [asdict(s) for s in self.slices], "studies": [asdict(s) for s in self.studies],
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
        }

    def write(self, out: str | Path) -> list[Path]:
        """JSON (everything in one file) or CSV (slices; studies and skipped files in sidecars)."""
        out = Path(out)
        if out.suffix.lower() == ".json":
            # ensure_ascii: a file name that is no valid UTF-8 (a lone surrogate in Python) is escaped
            atomic_write(out, lambda stream: stream.write(json.dumps(self.to_dict(), indent=2).encode("ascii")))
            return [out]
        if out.suffix.lower() != ".csv":
            raise ValueError(f"--out must end in .csv or .json, got {out.name}")
        written = [out]
        _write_csv(out, ["input", "source", "slice_index", "predicted", *[f"p_{c}" for c in self.classes], "cam",
                         "in_scope", "scope_reason", "warnings"],
                   [[s.input, s.source, "" if s.slice_index is None else s.slice_index, s.predicted,
                     *[f"{s.probabilities[c]:.6f}" for c in self.classes], s.cam or "", _flag(s.in_scope),
                     s.scope_reason, " | ".join(s.warnings)] for s in self.slices])
        if self.studies:
            written.append(_write_csv(
                out.with_suffix(".studies.csv"),
                ["input", "kind", "n_slices", "tumor_probability", "tumor", "threshold", "driving_slices",
                 "positive_slices", "aggregation", "in_scope_slices", "warnings"],
                [[s.input, s.kind, s.n_slices, "" if s.tumor_probability is None else f"{s.tumor_probability:.6f}",
                  _flag(s.tumor), s.threshold, " ".join(map(str, s.driving_slices)),
                  " ".join(map(str, s.positive_slices)), s.aggregation, " ".join(map(str, s.in_scope_slices)),
                  " | ".join(s.warnings)] for s in self.studies]))
        if self.skipped:
            written.append(_write_csv(out.with_suffix(".skipped.csv"), ["path", "reason"], self.skipped))
        return written


def _flag(value: bool | None) -> str:
    return "" if value is None else str(int(value))


def _write_csv(path: Path, header: list[str], rows) -> Path:
    """Written atomically (a killed run leaves the old file or none); file names that are no valid UTF-8
    (undecodable bytes, kept by Python as lone surrogates) are written as backslash escapes."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write(path, lambda stream: stream.write(text.getvalue().encode("utf-8", "backslashreplace")))
    return path


@dataclass
class _ReadInput:
    """An input read and preprocessed, waiting for the next forward pass."""

    item: InputItem
    slices: list[CTSlice]  # their pixels may be gone (read in a worker): the images and looks are what counts
    images: np.ndarray  # uint8 [n, S, S]
    looks: list | None = None  # the scope gate's look at each slice, taken where the pixels were read


class _CamWriter:
    """Grad-CAM overlays of the predicted class, one PNG per slice, under names unique within `folder`."""

    def __init__(self, folder: Path, explainer):
        if explainer is None:
            raise ValueError("Grad-CAM overlays need the PyTorch model (an explainer)")
        self.folder, self.explainer, self.used = folder, explainer, set()
        folder.mkdir(parents=True, exist_ok=True)

    def name(self, item: InputItem, ct_slice: CTSlice) -> str:
        stem = item.path.name.split(".")[0] if item.kind != "series" else item.path.name
        if ct_slice.index is not None and item.is_study:
            stem += f".slice-{ct_slice.index:04d}"
        name, number = f"{stem}.cam.png", 2
        while name in self.used:  # same file name in two folders
            name, number = f"{stem}-{number}.cam.png", number + 1
        self.used.add(name)
        return name

    def write(self, read: list[_ReadInput], images: np.ndarray, probs: np.ndarray, decisions: np.ndarray,
              classes: list[str]) -> list[str]:
        """The overlay paths, one per slice of `read` in order (the rows of `images`)."""
        from kidneyct.inference.explain import write_overlay  # imported here: only --cam runs draw
        heatmaps = self.explainer.heatmaps(images, decisions)
        slices = [(entry.item, ct_slice) for entry in read for ct_slice in entry.slices]
        paths = []
        for row, (item, ct_slice) in enumerate(slices):
            path = self.folder / self.name(item, ct_slice)
            write_overlay(images[row], heatmaps[row], classes[decisions[row]], float(probs[row, decisions[row]]),
                          path, ct_slice.source)
            paths.append(str(path))
        return paths


def open_backend(checkpoint: str | Path, backend: str = "torch", device: str = "auto", with_cam: bool = False,
                 cam_layer: str | None = None):
    """(backend, explainer or None). An .onnx file runs in onnxruntime; a .pt checkpoint in PyTorch, or in
    onnxruntime after an export on the fly. Grad-CAM always needs the PyTorch checkpoint."""
    path = Path(checkpoint)
    if path.suffix.lower() == ".onnx":
        if with_cam:
            raise ValueError("Grad-CAM needs the PyTorch checkpoint (.pt), not an ONNX export")
        return OnnxPredictor(path), None
    if backend not in ("torch", "onnx"):
        raise ValueError(f"unknown backend {backend!r}; choose torch or onnx")
    predictor = Predictor.from_checkpoint(path, device)
    explainer = None
    if with_cam:  # Grad-CAM and ONNX export are imported only when asked for: a fast start for the rest
        from kidneyct.inference.explain import GradCamExplainer

        explainer = GradCamExplainer.from_loaded(predictor.loaded, cam_layer, predictor.device)
    if backend == "onnx":
        from kidneyct.inference.export import export_onnx

        with tempfile.TemporaryDirectory() as folder:  # the session keeps the model in memory
            return OnnxPredictor(export_onnx(path, Path(folder) / "model.onnx")), explainer
    return predictor, explainer


def predict_inputs(backend: Backend, inputs, batch_size: int = 64, top_k: int | None = None,
                   threshold: float | None = None, cam_dir: str | Path | None = None, explainer=None,
                   progress: bool = True, rule: StudyRule | None = None,
                   max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES, workers: int | None = None) -> BatchPrediction:
    """Predict every slice of every input; scope and intensity checks; studies for series and volumes; CAM
    overlays when `cam_dir`.

    Args:
        backend: a Predictor or an OnnxPredictor (see `open_backend`).
        inputs: image files, folders (walked; the DICOM files of a folder form one series per
            SeriesInstanceUID), DICOMDIR files and NIfTI volumes.
        batch_size: slices per forward pass.
        top_k: overrides the study rule with the mean of the k highest in-scope slices.
        threshold: overrides the backend's (the checkpoint's) tumor threshold.
        cam_dir: write a Grad-CAM overlay per slice here (needs `explainer`).
        explainer: a GradCamExplainer of the same model.
        progress: show a progress bar on terminals.
        rule: overrides the checkpoint's study rule.
        max_decoded_bytes: the decoded-size budget of one input (see `kidneyct.io.budget`).
        workers: processes reading and preprocessing inputs while the model runs (default: one per core;
            0 or 1: in this process).

    Returns:
        A BatchPrediction: one SliceResult per slice (with its scope), one StudyResult per series or volume,
        and the inputs skipped as unreadable or failed, each with its reason (the batch goes on without them).
    """
    threshold = backend.threshold if threshold is None else threshold
    rule = rule or (StudyRule("top_k", k=top_k) if top_k is not None else rule_of(backend.stored))
    result = BatchPrediction(backend.classes, backend.temperature, threshold, backend.name, rule.to_dict())
    items, result.skipped = expand_inputs(inputs)
    cams = _CamWriter(Path(cam_dir), explainer) if cam_dir is not None else None
    judge = InputJudge(backend.stored, backend.preprocessing)
    warnings: dict[str, list[str]] = {}
    waiting: list[_ReadInput] = []
    # Inputs are read, preprocessed and located (the scope gate's kidney locator) in worker processes
    # (inference/pipeline.py), in order, while the model runs on the ones before them; an unreadable input
    # comes back as its skip reasons.
    prepared = prepared_inputs(items, backend.preprocessing, workers, look=judge.gate.look,
                               max_decoded_bytes=max_decoded_bytes)
    for read in progress_bar(prepared, progress, total=len(items), desc="predict", unit="input"):
        result.skipped += read.skipped
        if read.images is not None:
            waiting.append(_ReadInput(read.item, read.slices, read.images, read.looks))
        if sum(len(entry.slices) for entry in waiting) >= batch_size:
            result.slices += _predict_isolated(backend, waiting, threshold, batch_size, cams, judge, warnings,
                                               result.skipped)
            waiting = []
    result.slices += _predict_isolated(backend, waiting, threshold, batch_size, cams, judge, warnings, result.skipped)
    result.studies = _study_results(items, result.slices, backend.classes, threshold, rule, warnings)
    return result


def _predict_isolated(backend: Backend, read: list[_ReadInput], threshold: float | None, batch_size: int,
                      cams: _CamWriter | None, judge: InputJudge, warnings: dict[str, list[str]],
                      skipped: list[tuple[str, str]]) -> list[SliceResult]:
    """`_predict_read` of the whole group; when it fails, of each input alone, so that only the input at
    fault is skipped (with the reason)."""
    try:
        return _predict_read(backend, read, threshold, batch_size, cams, judge, warnings)
    except Exception as error:  # noqa: BLE001 - isolation: found below by predicting one input at a time
        if len(read) == 1:
            skipped.append((str(read[0].item.path), failure_reason(error)))
            return []
    return [row for entry in read
            for row in _predict_isolated(backend, [entry], threshold, batch_size, cams, judge, warnings, skipped)]


def _predict_read(backend: Backend, read: list[_ReadInput], threshold: float | None, batch_size: int,
                  cams: _CamWriter | None, judge: InputJudge, warnings: dict[str, list[str]]) -> list[SliceResult]:
    """One SliceResult per slice of `read`, in order, with its scope (and their overlays, when `cams`); each
    input's intensity warnings go to `warnings` by input name (and an image's onto its SliceResult)."""
    if not read:
        return []
    classes = backend.classes
    images = np.concatenate([entry.images for entry in read])
    probs = backend.probabilities_from_logits(backend.logits_uint8(images, batch_size))
    decisions = decide(probs, classes, threshold)
    cam_paths = cams.write(read, images, probs, decisions, classes) if cams is not None else [None] * len(images)
    results, row = [], 0
    for entry in read:
        features = None
        if judge.needs_features and not entry.item.is_study:
            features = backend.features_uint8(entry.images, batch_size)
        scopes = judge.scopes(entry.slices, entry.item.is_study, features, entry.looks)
        warnings[entry.item.name] = judge.warnings(entry.images, scopes, entry.slices[0].hu) + sorted(
            {note for ct_slice in entry.slices for note in ct_slice.warnings})  # e.g. a DICOM without Modality
        for ct_slice, scope in zip(entry.slices, scopes):
            results.append(SliceResult(
                entry.item.name, ct_slice.source, ct_slice.index, dict(zip(classes, map(float, probs[row]))),
                classes[decisions[row]], cam_paths[row], scope.in_scope, scope.reason,
                [] if entry.item.is_study else warnings[entry.item.name]))
            row += 1
    return results


def _study_results(items: list[InputItem], slices: list[SliceResult], classes: list[str], threshold: float | None,
                   rule: StudyRule, warnings: dict[str, list[str]]) -> list[StudyResult]:
    """One StudyResult per series or volume with predicted slices, called over its in-scope slices by `rule`;
    none without a tumor class."""
    pos = positive_index(classes)
    if pos is None:
        return []
    by_input: dict[str, list[SliceResult]] = {}
    for s in slices:
        by_input.setdefault(s.input, []).append(s)
    cut = 0.5 if threshold is None else threshold
    studies = []
    for item in items:
        rows = by_input.get(item.name)
        if not item.is_study or not rows:
            continue
        tumor = np.array([r.probabilities[classes[pos]] for r in rows])
        in_scope = [bool(r.in_scope) for r in rows]
        call = call_study(tumor, [r.slice_index for r in rows], cut, rule, in_scope)
        studies.append(StudyResult(
            item.name, item.kind, len(rows), call.probability, call.tumor, cut, call.description,
            call.driving_slices, [r.slice_index for r in rows if r.in_scope and r.predicted == classes[pos]],
            [r.slice_index for r in rows if r.in_scope], warnings.get(item.name, [])))
    return studies
