"""The one prediction path. `run(predictor, inputs)` expands files, folders, DICOM series, NIfTI volumes and
in-memory slices into inputs, reads them in worker processes while the model runs (kidneyct.inference.pipeline),
and yields one StudyResult per input: per slice the calibrated probabilities, the scope (kidneyct.inference.scope)
and, in scope only, the class call under the threshold; per series or volume the call by the study rule over its
in-scope slices; the intensity warnings; Grad-CAM overlays when asked for.

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
from kidneyct.inference.scope import SliceScope
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
    prepared = prepared_inputs(items, predictor.preprocessing, options.workers, look=predictor.judge.gate.look,
                               max_decoded_bytes=options.max_decoded_bytes)
    if options.progress:  # tqdm only when a bar is wanted: its import costs a one-slice prediction 0.15 s
        prepared = progress_bar(prepared, total=len(items), desc="predict", unit="input")
    waiting: list[Prepared] = []
    for entry in prepared:
        waiting.append(entry)
        if sum(len(e.slices) for e in waiting) >= options.batch_size:
            yield from score(predictor, waiting, heatmaps)
            waiting = []
    yield from score(predictor, waiting, heatmaps)


def prepare_input(predictor: Predictor, item: InputItem) -> Prepared:
    """One input read and preprocessed for `score`, with the scope gate's look at each slice (run where the
    pixels are: the web API's reading threads)."""
    return prepare(item, predictor.preprocessing, predictor.judge.gate.look, predictor.options.max_decoded_bytes)


def score(predictor: Predictor, prepared: list[Prepared], heatmaps: "_Heatmaps | None" = None) -> list[StudyResult]:
    """The StudyResults of prepared inputs, scored together; when that fails, one by one, so that only the
    input at fault becomes an unread result (with the reason)."""
    try:
        return _score(predictor, prepared, heatmaps)
    except Exception as error:  # noqa: BLE001 - isolation: found by scoring one input at a time
        if len(prepared) == 1:
            entry = prepared[0]
            return [StudyResult(entry.item.name, "unread",
                                skipped=[*entry.skipped, (str(entry.item.path), failure_reason(error))])]
    return [result for entry in prepared for result in score(predictor, [entry], heatmaps)]


@dataclass
class _Scored:
    """A group's forward pass: calibrated probabilities, the threshold decisions and the features of its single
    images (for the scope gate), row by row over the group's slices."""

    probabilities: np.ndarray
    decisions: np.ndarray
    features: dict[int, np.ndarray]  # by row, for the slices of single images (a series is judged by the locator)


def _score(predictor: Predictor, prepared: list[Prepared], heatmaps) -> list[StudyResult]:
    read = [entry for entry in prepared if entry.images is not None]
    scored = _forward(predictor, read) if read else None
    results, row = [], 0
    for entry in prepared:
        if entry.images is None:
            results.append(StudyResult(entry.item.name, "unread", skipped=list(entry.skipped)))
            continue
        results.append(_result(predictor, entry, scored, row, heatmaps))
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
    return _Scored(probabilities, decide(probabilities, predictor.classes, predictor.threshold), features)


def _result(predictor: Predictor, entry: Prepared, scored: _Scored, first: int, heatmaps) -> StudyResult:
    """The StudyResult of one read input whose slices are rows first.. of `scored`."""
    rows = range(first, first + len(entry.slices))
    features = np.stack([scored.features[r] for r in rows]) if first in scored.features else None
    scopes = predictor.judge.scopes(entry.slices, entry.item.is_study, features, entry.looks)
    warnings = predictor.judge.warnings(entry.images, scopes, entry.slices[0].hu)
    if entry.item.is_study:  # what the reader could not check (e.g. a DICOM without Modality), once per study
        warnings = [*warnings, *sorted({note for ct_slice in entry.slices for note in ct_slice.warnings})]
    slices = [_slice(predictor, ct_slice, scored, row, scope, [] if entry.item.is_study else warnings)
              for ct_slice, row, scope in zip(entry.slices, rows, scopes)]
    if heatmaps is not None:
        heatmaps.write(entry, slices, scored.decisions[first:first + len(slices)])
    result = StudyResult(entry.item.name, entry.item.kind, slices, skipped=list(entry.skipped),
                         warnings=warnings if entry.item.is_study else [])
    if entry.item.is_study:
        _call_study(predictor, result)
    return result


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
