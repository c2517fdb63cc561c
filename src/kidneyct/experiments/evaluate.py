"""Evaluate a checkpoint on its stored split: metrics with bootstrap intervals, plots, HTML/Markdown.

The job behind `kidneyct evaluate`: it runs inference (kidneyct.inference) and measures the result with
kidneyct.evaluation, so it sits above both."""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kidneyct.about import DISCLAIMER
from kidneyct.checkpoint import Calibration, DataRecord, OperatingPoint
from kidneyct.data.audit import audit_lines, leakage_audit
from kidneyct.data.cache import CacheSettings
from kidneyct.data.catalogue import catalogue_of
from kidneyct.data.decode import decode_samples
from kidneyct.data.groups import series_view
from kidneyct.data.prepare import as_listed, report_skipped
from kidneyct.data.sources import Source, run_sources, split_roots
from kidneyct.data.splits import read_split_csv
from kidneyct.errors import DatasetError
from kidneyct.evaluation.calibration import calibration_summary, softmax
from kidneyct.evaluation.metrics import bootstrap_metrics
from kidneyct.evaluation.per_source import table_lines
from kidneyct.evaluation.plots import confusion_plot, curves_plot, pr_plot, reliability_plot, roc_plot
from kidneyct.evaluation.report import summary_rows, write_reports
from kidneyct.evaluation.series import aggregate_by_group
from kidneyct.study.rule import StudyRule
from kidneyct.experiments.cv_report import OutOfFold, source_table
from kidneyct.inference.predictor import Predictor
from kidneyct.labels import decide, positive_index
from kidneyct.preprocess import Preprocessing
from kidneyct.run_folder import REPORT_METRICS, RunFolder

log = logging.getLogger(__name__)

SPLIT_DESCRIPTIONS = {
    "random": ("image-level stratified random split (seed {seed}); neighbouring slices of one series can sit "
               "on both sides, so these numbers are optimistic for unseen patients"),
    "grouped": ("series-disjoint stratified split (seed {seed}): series inferred from the images (exact and "
                "near-duplicates, neighbouring file numbers); no series has images on two sides"),
    "all": "no split: every readable image under the dataset folder",
}


@dataclass
class EvaluationResult:
    out: Path
    metrics: dict
    html: Path
    markdown: Path
    series_metrics: dict | None = None
    leakage_audit: dict | None = None
    per_source: dict | None = None  # the per-source table (cv_report.source_table)


def describe_split(kind: str, seed) -> str:
    return SPLIT_DESCRIPTIONS.get(kind, kind).format(seed=seed)


def _write_predictions(path: Path, samples, labels, probs, predictions, classes) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "slice_index", "source", "group", "label", "predicted",
                         *[f"p_{c}" for c in classes]])
        for sample, label, row, predicted in zip(samples, labels, probs, predictions):
            writer.writerow([sample.path, "" if sample.slice_index is None else sample.slice_index,
                             sample.source or "", sample.group or "", classes[label], classes[int(predicted)],
                             *[f"{p:.6f}" for p in row]])


def _series_lines(series: dict, rule: StudyRule) -> list[str]:
    lines = [f"{series['n']} series; per series, the checkpoint's study rule (the one predict calls studies by): "
             f"{rule.describe()} (every slice of an inferred series counts as in scope), the other classes sharing "
             "the rest in proportion to their mean probabilities; 95% intervals bootstrap over series."]
    lines += [f"{label}: {value} ({interval})" for label, value, interval in summary_rows(series) if value != "n/a"]
    return lines


def calibration_section(fitted: Calibration, split: str, labels, logits) -> tuple[dict, list]:
    """ECE before/after temperature scaling on the evaluated split, next to the fit on validation."""
    temperature = fitted.temperature
    summary = calibration_summary(logits, labels, temperature)
    lines = [f"Temperature T = {temperature:.4g} ({fitted.method})."]
    check = fitted.validation
    if check is not None:
        lines.append(f"Validation ({check.n} images): ECE {check.ece_before:.4f} -> {check.ece_after:.4f}, "
                     f"NLL {check.nll_before:.4f} -> {check.nll_after:.4f}.")
    lines.append(f"Evaluated split ({split}, {summary['n']} images): ECE {summary['ece_before']:.4f} -> "
                 f"{summary['ece_after']:.4f}, NLL {summary['nll_before']:.4f} -> {summary['nll_after']:.4f}.")
    lines.append(f"ECE: top-label confidence, {summary['ece_bins']} equal-width bins, weighted by bin size.")
    return {"temperature": temperature, "fitted": fitted.to_dict(), "evaluated": summary}, lines


def operating_point_lines(point: OperatingPoint | None, threshold: float | None) -> list[str]:
    if threshold is None:
        return ["No tumor threshold recorded: decisions are the most probable class."]
    lines = [f"Tumor threshold {threshold:.4g} on calibrated p(tumor): a slice is called tumor at or above it, "
             "otherwise the most probable other class. Metrics above use these decisions; ROC/PR do not depend on it."]
    if point is not None and point.val_sensitivity is not None:
        lines.append(f"Chosen by: {point.method}; on validation: sensitivity {point.val_sensitivity:.3f}, "
                     f"specificity {point.val_specificity:.3f} ({point.val_n} images).")
    return lines


def evaluate(checkpoint: str | Path, data: str | Path | list[str] | None = None, split: str = "test",
             out: str | Path | None = None, device: str = "auto", batch_size: int = 256, n_boot: int = 1000,
             workers: int | None = None, progress: bool = True, audit: bool = True,
             cache: CacheSettings | None = CacheSettings(), sources: str | None = None) -> EvaluationResult:
    """Per-image and per-series metrics with bootstrap intervals over series, a leakage audit
    against the training split, plots, predictions.csv, metrics.json, report.html and report.md.

    Args:
        checkpoint: a checkpoint written by training; its split.csv beside it says which images to take.
        data: the dataset folder, or several (default: the sources the checkpoint was trained on).
        split: "test", "val", "train", or "all" (every image under `data`, also used when no split.csv exists).
        out: the report folder (default: `report/` beside the checkpoint).
        device, batch_size, workers, progress, cache: where and how the images are decoded and run.
        n_boot: bootstrap resamples of series behind every interval.
        audit: run the leakage audit of the evaluated images against the training split.
        sources: a sources file (TOML) instead of, or beside, `data`.

    Returns:
        An EvaluationResult: the folder, the metrics, the HTML and Markdown reports, per-series metrics and
        the leakage audit.
    """
    checkpoint = Path(checkpoint)
    predictor = Predictor.open(checkpoint, device)
    stored = predictor.checkpoint.data
    run = run_sources(predictor.checkpoint, data, sources)
    root = run[0].root if len(run) == 1 else Path(stored.root or run[0].root)
    chosen = _choose_samples(run, predictor.classes, RunFolder.of(checkpoint).path / stored.split_csv, split,
                             stored.split_kind, cache)
    options = dict(workers=workers, progress=progress, cache=cache, superset=chosen.superset)
    jpeg_device = predictor.device if predictor.device.type == "cuda" else None
    decoded = decode_samples(chosen.samples, predictor.preprocessing, jpeg_device=jpeg_device, **options)
    report_skipped(decoded.skipped)
    scored = _score(predictor, decoded.samples, decoded.images, batch_size, n_boot)
    sources = _per_source(predictor, run, decoded, scored, n_boot, scored.masks)
    leak = None
    if audit and chosen.train_samples and chosen.split != "train":
        leak = _leakage(chosen.train_samples, decoded.samples, predictor.preprocessing, options)

    out = Path(out) if out is not None else RunFolder.of(checkpoint).report
    out.mkdir(parents=True, exist_ok=True)
    _write_predictions(out / "predictions.csv", decoded.samples, scored.labels, scored.probs, scored.predictions,
                       predictor.classes)
    figures = _figures(scored, predictor.classes, [h.to_dict() for h in predictor.checkpoint.progress.history], out)
    calibration, sections = _sections(predictor, chosen.split, scored, leak, sources)
    skipped = [list(s) for s in stored.skipped] + [list(s) for s in decoded.skipped]
    point = predictor.checkpoint.operating_point
    result = {
        "disclaimer": DISCLAIMER,
        "checkpoint": str(checkpoint), "epoch": predictor.checkpoint.progress.epoch, "split": chosen.split,
        "classes": predictor.classes, "model": predictor.checkpoint.model.to_dict(),
        "preprocessing": predictor.preprocessing.to_dict(),
        "data": _data_summary(root, stored, chosen.split_kind, skipped),
        "metrics": scored.metrics, "series_metrics": scored.series_metrics, "per_source": sources,
        "sources": [s.to_dict() for s in predictor.checkpoint.sources], "leakage_audit": leak,
        "calibration": calibration,
        "threshold": predictor.threshold,
        "operating_point": None if point is None else point.to_dict(),
        "sections": sections,
    }
    (out / REPORT_METRICS).write_text(json.dumps(result, indent=2))
    html_path, md_path = write_reports(result, figures, out)
    return EvaluationResult(out, scored.metrics, html_path, md_path, scored.series_metrics, leak, sources)


def split_logits(checkpoint: str | Path, split: str = "val", sources: str | None = None, device: str = "cpu",
                 cache: CacheSettings | None = CacheSettings()) -> tuple[np.ndarray, np.ndarray]:
    """The logits [N, K] and labels [N] of a run folder's `split` (its split.csv) by the checkpoint's model, through
    the looks of a segmenting model: what a temperature is fitted on."""
    predictor = Predictor.open(checkpoint, device)
    stored = predictor.checkpoint.data
    chosen = _choose_samples(run_sources(predictor.checkpoint, None, sources), predictor.classes,
                             RunFolder.of(checkpoint).path / stored.split_csv, split, stored.split_kind, cache)
    decoded = decode_samples(chosen.samples, predictor.preprocessing, progress=False, cache=cache,
                             superset=chosen.superset)
    report_skipped(decoded.skipped)
    if predictor.backend.segmenting:
        logits = segmenter_logits(predictor, decoded.images)[0]
    else:
        logits = predictor.logits(decoded.images)
    return logits, np.array([s.label for s in decoded.samples])


def _per_source(predictor: Predictor, sources: list[Source], decoded, scored: _Scored, n_boot: int,
                predicted_masks=None) -> dict:
    """The table with a row per source and a pooled row (see cv_report.source_table), on the evaluated slices;
    the Dice columns stay n/a without a segmenting model's `predicted_masks`."""
    pos = positive_index(predictor.classes)
    if pos is None:
        return {}
    samples = decoded.samples
    oof = OutOfFold([s.key for s in samples], [s.origin or predictor.classes[s.label] for s in samples],
                    [s.group or s.key for s in samples], scored.probs[None, :, pos], np.zeros((1, len(samples)), int),
                    [s.source or "" for s in samples])
    group_sources = {source.name for source in sources if source.grouping != "file"}
    return source_table(oof, (scored.predictions == pos)[None], group_sources, n_boot,
                        true_masks=decoded.masks, predicted_masks=predicted_masks)


def _leakage(train_samples, samples, prep: Preprocessing, options: dict) -> dict:
    """The leakage audit of `samples` against the training images, on the same fixed view the series were
    inferred on, whatever the model's size or crop."""
    view = series_view(prep)
    reference = decode_samples(train_samples, view, **options)
    query = decode_samples(samples, view, **options)
    return leakage_audit(reference.images, reference.samples, query.images, query.samples)


def _sections(predictor: Predictor, split: str, scored: _Scored, leak: dict | None,
              sources: dict) -> tuple[dict, list]:
    """The calibration summary, and the report's sections after the metrics: per source, series, leakage,
    calibration, operating point."""
    stored = predictor.checkpoint
    calibration, calibration_lines = calibration_section(stored.calibration, split, scored.labels, scored.logits)
    sections = [("Per source", table_lines(sources["rows"], sources["question"].replace("_", " ")))] if sources else []
    sections.append(("Per series (inferred series)", _series_lines(scored.series_metrics, stored.study.rule)))
    if leak is not None:
        sections.append((f"Leakage audit: {split} images against the training split", audit_lines(leak)))
    sections += [("Calibration", calibration_lines),
                 ("Operating point", operating_point_lines(stored.operating_point, predictor.threshold))]
    return calibration, sections


@dataclass
class _Chosen:
    """The images to evaluate, the training images to audit them against, and the whole catalogue (whose
    decode cache a training run on this folder left) when a cache may be used."""

    samples: list
    train_samples: list
    superset: list | None
    split: str
    split_kind: str


def _choose_samples(sources: list[Source], classes: list[str], split_csv: Path, split: str, split_kind: str,
                    cache: CacheSettings | None) -> _Chosen:
    if split == "all" or not split_csv.exists():
        if split != "all":
            log.warning("no split file %s: evaluating every image of %s", split_csv,
                        ", ".join(str(source.root) for source in sources))
        return _Chosen(catalogue_of(sources, classes).samples, [], None, "all", "all")
    by_split = read_split_csv(split_csv, split_roots(sources), classes)
    if not by_split[split]:
        raise ValueError(f"split {split!r} in {split_csv} is empty")
    try:
        listed = catalogue_of(sources, classes).samples
    except DatasetError:
        listed = []
    chosen, train_samples = as_listed(by_split[split], listed), as_listed(by_split["train"], listed)
    superset = listed or None if cache is not None and cache.enabled else None
    return _Chosen(chosen, train_samples, superset, split, split_kind)


@dataclass
class _Scored:
    labels: np.ndarray
    logits: np.ndarray
    probs: np.ndarray  # calibrated
    predictions: np.ndarray  # under the checkpoint's threshold
    metrics: dict  # per image
    series_metrics: dict
    masks: np.ndarray | None = None  # a segmenting model's label maps [N, S, S] on the views' grid


def segmenter_logits(predictor: Predictor, images: np.ndarray,
                     chunk: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A segmenting model's slice logits, label maps and overview kidney shares (what its scope gate reads: the
    label maps, zooms pasted in, are not), a chunk of views at a time (its probability maps are 8 bytes a pixel)."""
    from kidneyct.inference.mask_files import label_map

    threshold = predictor.checkpoint.outputs.segmentation.mask_threshold
    logits, masks, kidney_fraction = [], [], []
    for start in range(0, len(images), chunk):
        output = predictor.backend.looked(np.asarray(images[start:start + chunk]))
        logits.append(output.logits)
        masks.append(label_map(output.maps[:, 0], output.maps[:, 1], threshold))
        kidney_fraction.append(output.kidney_fraction)
    return np.concatenate(logits), np.concatenate(masks), np.concatenate(kidney_fraction)


def _score(predictor: Predictor, samples, images: np.ndarray, batch_size: int, n_boot: int) -> _Scored:
    """Predictions and metrics per image and per inferred series, with bootstrap intervals over series."""
    classes, threshold = predictor.classes, predictor.threshold
    labels = np.array([s.label for s in samples])
    groups = [s.group or s.key for s in samples]
    masks = None
    if predictor.backend.segmenting:
        logits, masks, _ = segmenter_logits(predictor, images)
    else:
        logits = predictor.logits(images, batch_size)
    probs = predictor.probabilities(logits)
    predictions = decide(probs, classes, threshold)
    # Slices of one series are not independent: resample whole series for every interval.
    metrics = bootstrap_metrics(labels, probs, classes, predictions=predictions, groups=groups, n_boot=n_boot)
    _, series_labels, series_probs = aggregate_by_group(labels, probs, groups, predictor.checkpoint.study.rule, classes)
    series_metrics = bootstrap_metrics(series_labels, series_probs, classes,
                                       predictions=decide(series_probs, classes, threshold), n_boot=n_boot)
    series_metrics["bootstrap"]["unit"] = "series"
    return _Scored(labels, logits, probs, predictions, metrics, series_metrics, masks)


def _figures(scored: _Scored, classes: list[str], history: list[dict], out: Path) -> dict[str, Path]:
    figures = {
        "confusion matrix": confusion_plot(scored.metrics["confusion_matrix"], out / "confusion_matrix.png"),
        "ROC": roc_plot(scored.labels, scored.probs, classes, out / "roc.png"),
        "precision-recall": pr_plot(scored.labels, scored.probs, classes, out / "pr.png"),
        "reliability diagram": reliability_plot(scored.labels, softmax(scored.logits), scored.probs,
                                                out / "reliability.png"),
    }
    curves = curves_plot(history, out / "training_curves.png")
    if curves is not None:
        figures["training curves"] = curves
    return figures


def _data_summary(root: Path, stored: DataRecord, split_kind: str, skipped: list) -> dict:
    return {
        "root": str(root), "synthetic": stored.synthetic, "split_kind": split_kind,
        "split_description": describe_split(split_kind, stored.split_seed),
        "split_sizes": stored.split_sizes, "skipped": skipped,
    }
