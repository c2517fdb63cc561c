"""The one prediction path. `run(predictor, inputs)` expands files, folders, DICOM series, NIfTI volumes and
in-memory slices into inputs, reads them in worker processes while the model runs (kidneyct.inference.pipeline),
and yields one StudyResult per input: per slice the calibrated probabilities, the scope (kidneyct.inference.scope)
and, in scope only, the class call under the threshold; per series or volume the call by the study rule over its
in-scope slices; the intensity warnings; Grad-CAM overlays when asked for. A segmenting checkpoint
(`checkpoint.outputs.segmentation`) also gives each in-scope slice its kidney and tumor areas, and writes label
masks and DICOM SEGs when asked for (kidneyct.inference.segmented); its kidney map is its scope gate, and an input
in Hounsfield units whose kidneys it finds unenhanced gets no call.

The command line, `kidneyct.load(...).predict`, the web API and the DICOM node all call it (the web API through
`prepare_input` and `score`, its two halves, so that uploads are decoded in its reading threads and scored under
its model lock); they add transport and formatting only."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kidneyct.inference.pipeline import Prepared, failure_reason, prepare, prepared_inputs
from kidneyct.inference.predictor import Predictor, as_input
from kidneyct.inference.results import SliceResult, StudyResult
from kidneyct.inference.scope import UNENHANCED, SliceScope
from kidneyct.io import InputItem, expand_inputs
from kidneyct.labels import decide, positive_index
from kidneyct.runtime import progress_bar
from kidneyct.study.rule import call_study

NO_TUMOR_CLASS = "the model has no tumor class: no study call"


def run(predictor: Predictor, inputs) -> Iterator[StudyResult]:
    """One StudyResult per input, in order; an input that cannot be read is a result too (kind "unread", the
    reasons in `skipped`), and the rest go on without it.

    Args:
        predictor: the model and its options (threshold, study rule, batch size, readers, heatmaps).
        inputs: image files, folders (walked; the DICOM files of a folder form one series per
            SeriesInstanceUID, and every image or volume under it is an input of its own), DICOMDIR files, NIfTI
            volumes, and in-memory slices (arrays, PIL images, CTSlices).
    """
    entries = _expand(inputs)
    scored = _scored([e for e in entries if isinstance(e, InputItem)], predictor)
    for entry in entries:
        yield entry if isinstance(entry, StudyResult) else next(scored)


def _expand(inputs) -> list[InputItem | StudyResult]:
    """The inputs as items to read, in order; one that names nothing readable as its unread result."""
    entries: list[InputItem | StudyResult] = []
    for given in map(as_input, inputs):
        if isinstance(given, InputItem):
            entries.append(given)
            continue
        found, skipped = expand_inputs([given])
        entries += found + [StudyResult(path, "unread", skipped=[(path, reason)]) for path, reason in skipped]
    return entries


def _scored(items: list[InputItem], predictor: Predictor) -> Iterator[StudyResult]:
    """The items' results in order, read ahead in worker processes and scored in batches of slices."""
    options = predictor.options
    heatmaps = _Heatmaps(Path(options.heatmaps), predictor) if options.heatmaps is not None else None
    masks = None
    if options.masks is not None and predictor.backend.segmenting:
        from kidneyct.inference.segmented import MaskFiles  # imported here: only segmenting models write masks

        masks = MaskFiles(options.masks)
    prepared = prepared_inputs(items, predictor.preprocessing, options.workers, look=predictor.judge.look,
                               max_decoded_bytes=options.max_decoded_bytes)
    if options.progress:  # tqdm only when a bar is wanted: its import costs a one-slice prediction 0.15 s
        prepared = progress_bar(prepared, total=len(items), desc="predict", unit="input")
    waiting: list[Prepared] = []
    for entry in prepared:
        waiting.append(entry)
        if sum(len(e.slices) for e in waiting) >= options.batch_size:
            yield from score(predictor, waiting, heatmaps, masks)
            waiting = []
    yield from score(predictor, waiting, heatmaps, masks)


def prepare_input(predictor: Predictor, item: InputItem) -> Prepared:
    """One input read and preprocessed for `score`, with the scope gate's look at each slice (run where the
    pixels are: the web API's reading threads)."""
    return prepare(item, predictor.preprocessing, predictor.judge.look, predictor.options.max_decoded_bytes)


def score(predictor: Predictor, prepared: list[Prepared], heatmaps: "_Heatmaps | None" = None,
          masks=None) -> list[StudyResult]:
    """The StudyResults of prepared inputs, scored together; when that fails, one by one, so that only the
    input at fault becomes an unread result (with the reason). `masks`: a segmenting model's label files
    (kidneyct.inference.segmented.MaskFiles), when wanted."""
    try:
        return _score(predictor, prepared, heatmaps, masks)
    except Exception as error:  # noqa: BLE001 - isolation: found by scoring one input at a time
        if len(prepared) == 1:
            entry = prepared[0]
            return [StudyResult(entry.item.name, "unread",
                                skipped=[*entry.skipped, (str(entry.item.path), failure_reason(error))])]
    return [result for entry in prepared for result in score(predictor, [entry], heatmaps, masks)]


@dataclass
class _Scored:
    """A group's forward pass: calibrated probabilities, the threshold decisions and the features of its single
    images (for the scope gate), row by row over the group's slices."""

    probabilities: np.ndarray
    decisions: np.ndarray
    features: dict[int, np.ndarray]  # by row, for the slices of single images (a series is judged by the locator)
    maps: np.ndarray | None = None  # a segmenting model's kidney and tumor probabilities [N, 2, V, V] on the views
    kidney_fraction: np.ndarray | None = None  # a segmenting model's kidney-map share of each view [N]


def _score(predictor: Predictor, prepared: list[Prepared], heatmaps, masks) -> list[StudyResult]:
    read = [entry for entry in prepared if entry.images is not None]
    scored = _forward(predictor, read) if read else None
    results, row = [], 0
    for entry in prepared:
        if entry.images is None:
            results.append(StudyResult(entry.item.name, "unread", skipped=list(entry.skipped)))
            continue
        results.append(_result(predictor, entry, scored, row, heatmaps, masks))
        row += len(entry.slices)
    return results


def _forward(predictor: Predictor, read: list[Prepared]) -> _Scored:
    images = np.concatenate([entry.images for entry in read])
    single = np.concatenate([np.full(len(e.slices), not e.item.is_study and predictor.judge.needs_features)
                             for e in read])
    output = predictor.backend.forward(images, predictor.options.batch_size, single)
    probabilities = predictor.probabilities(output.logits)
    features = {}
    if output.features is not None:
        features = dict(zip(np.flatnonzero(single).tolist(), output.features))
    return _Scored(probabilities, decide(probabilities, predictor.classes, predictor.threshold), features,
                   output.maps, output.kidney_fraction)


def _result(predictor: Predictor, entry: Prepared, scored: _Scored, first: int, heatmaps, masks) -> StudyResult:
    """The StudyResult of one read input whose slices are rows first.. of `scored`."""
    rows = range(first, first + len(entry.slices))
    judge, hu = predictor.judge, entry.slices[0].hu
    features = np.stack([scored.features[r] for r in rows]) if first in scored.features else None
    maps = None if scored.maps is None else scored.maps[first:first + len(entry.slices)]
    fraction = None if scored.kidney_fraction is None else scored.kidney_fraction[first:first + len(entry.slices)]
    scopes = judge.scopes(entry.slices, entry.item.is_study, features, entry.looks, fraction)
    unenhanced = None if maps is None else judge.unenhanced(entry.images, maps[:, 0], scopes, hu)
    if unenhanced is not None:  # no call on any slice: the model never saw unenhanced kidneys
        scopes = [SliceScope(False, f"{UNENHANCED}: out of scope") for _ in scopes]
    warnings = judge.warnings(entry.images, scopes, hu) + ([unenhanced] if unenhanced else [])
    if entry.item.is_study:  # what the reader could not check (e.g. a DICOM without Modality), once per study
        warnings = [*warnings, *sorted({note for ct_slice in entry.slices for note in ct_slice.warnings})]
    slices = [_slice(predictor, ct_slice, scored, row, scope, [] if entry.item.is_study else warnings)
              for ct_slice, row, scope in zip(entry.slices, rows, scopes)]
    if heatmaps is not None:
        heatmaps.write(entry, slices, scored.decisions[first:first + len(slices)])
    if maps is not None:
        _segmented(predictor, entry, maps, scopes, slices, masks)
    result = StudyResult(entry.item.name, entry.item.kind, slices, skipped=list(entry.skipped),
                         warnings=warnings if entry.item.is_study else [])
    if entry.item.is_study:
        _call_study(predictor, result)
        if unenhanced is not None:
            result.rule = UNENHANCED
    return result


def _segmented(predictor: Predictor, entry: Prepared, maps: np.ndarray, scopes: list[SliceScope],
               slices: list[SliceResult], masks) -> None:
    """A segmenting model's areas on the in-scope slices, and the label files and DICOM SEG when asked for."""
    from kidneyct.inference import segmented  # imported here: only segmenting models need it

    options, segmentation = predictor.options, predictor.checkpoint.outputs.segmentation
    labels = segmented.input_labels(entry, maps, scopes, segmentation.mask_threshold)
    for result, ct_slice, slice_labels, scope in zip(slices, entry.slices, labels, scopes):
        if scope.in_scope:
            result.areas = segmented.areas(slice_labels, ct_slice.spacing if ct_slice.hu else None)
    if masks is not None:
        path = str(masks.write(entry, labels))
        for result in slices:
            result.masks = {"labels": path}
    if options.dicom_seg is not None and any(scope.in_scope for scope in scopes):
        written = segmented.write_dicom_seg(entry, labels, options.dicom_seg, predictor.checkpoint.model.name)
        if written is not None:
            for result in slices:
                result.masks["dicom_seg"] = str(written)


def _slice(predictor: Predictor, ct_slice, scored: _Scored, row: int, scope: SliceScope,
           warnings: list[str]) -> SliceResult:
    classes = predictor.classes
    modality = [] if ct_slice.modality in (None, "CT") else [
        f"modality {ct_slice.modality}: the model was trained on CT; probabilities are not meaningful"]
    return SliceResult(ct_slice.source, ct_slice.index, dict(zip(classes, map(float, scored.probabilities[row]))),
                       classes[scored.decisions[row]] if scope.in_scope else None, scope.in_scope, scope.reason,
                       modality + list(warnings) + list(ct_slice.warnings))


def _call_study(predictor: Predictor, study: StudyResult) -> None:
    """The study fields of a series or volume: the call by the study rule over its in-scope slices."""
    pos = positive_index(predictor.classes)
    study.in_scope_slices = [s.index for s in study.slices if s.in_scope]
    if pos is None:
        study.rule = NO_TUMOR_CLASS
        return
    tumor = predictor.classes[pos]
    study.threshold = 0.5 if predictor.threshold is None else predictor.threshold
    call = call_study([s.probabilities[tumor] for s in study.slices], [s.index for s in study.slices],
                      study.threshold, predictor.rule, [s.in_scope for s in study.slices])
    study.tumor_probability, study.tumor, study.rule = call.probability, call.tumor, call.description
    study.driving_slices = call.driving_slices
    study.positive_slices = [s.index for s in study.slices if s.call == tumor]


class _Heatmaps:
    """Grad-CAM overlays, one PNG per slice, under names unique within `folder`. A slice in scope shows its
    call's heatmap; one out of scope, which has no call, the tumor class's (where the model would see one)."""

    def __init__(self, folder: Path, predictor: Predictor):
        self.folder, self.predictor, self.explainer, self.used = folder, predictor, predictor.explainer(), set()
        folder.mkdir(parents=True, exist_ok=True)

    def name(self, item: InputItem, index: int | None) -> str:
        stem = item.path.name.split(".")[0] if item.kind != "series" else item.path.name
        if index is not None and item.is_study:
            stem += f".slice-{index:04d}"
        name, number = f"{stem}.cam.png", 2
        while name in self.used:  # same file name in two folders
            name, number = f"{stem}-{number}.cam.png", number + 1
        self.used.add(name)
        return name

    def write(self, entry: Prepared, slices: list[SliceResult], decisions: np.ndarray) -> None:
        from kidneyct.inference.overlay import write_overlay  # imported here: only heatmap runs draw

        classes = self.predictor.classes
        fallback = positive_index(classes)
        targets = [int(d) if s.in_scope or fallback is None else fallback for s, d in zip(slices, decisions)]
        maps = self.explainer.heatmaps(entry.images, targets)
        for image, heatmap, target, result in zip(entry.images, maps, targets, slices):
            label = classes[target] if result.call is not None else f"out of scope, no call: p({classes[target]})"
            path = self.folder / self.name(entry.item, result.index)
            write_overlay(image, heatmap, label, result.probabilities[classes[target]], path, result.source)
            result.heatmap = str(path)
