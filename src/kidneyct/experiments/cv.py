"""Grouped, class-stratified k-fold cross-validation: one training per fold, metrics per fold and their
mean and standard deviation, per image and per series.

Series are inferred once, by the same `infer_groups` the grouped split uses, and dealt whole to the folds
(no series in two folds). For fold k, fold k is the test set; a validation set (early stopping,
calibration, operating point) is carved from the other folds' series, again grouped and stratified, so
the test fold never steers training. The images are decoded once: every fold's training loads the
decode cache the first pass wrote. Every image is tested exactly once; the out-of-fold predictions are
kept in predictions.csv.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from kidneyct.about import DISCLAIMER
from kidneyct.config import TrainConfig
from kidneyct.data.prepare import prepare_data
from kidneyct.data.splits import SplitFractions, grouped_stratified_folds, grouped_stratified_split, write_split_csv
from kidneyct.evaluation.metrics import point_metrics
from kidneyct.evaluation.series import aggregate_by_group
from kidneyct.inference.predictor import Predictor
from kidneyct.labels import decide
from kidneyct.training import settings
from kidneyct.training.distributed import DistContext
from kidneyct.training.engine import head_logits
from kidneyct.training.features import FeatureMemo, subset_features, uses_feature_cache
from kidneyct.training.train import SPLIT_CSV, train

log = logging.getLogger(__name__)

METRICS = [
    ("accuracy", "Accuracy"), ("balanced_accuracy", "Balanced accuracy"),
    ("tumor_sensitivity", "Tumor sensitivity"), ("tumor_specificity", "Tumor specificity"),
    ("roc_auc", "ROC-AUC (tumor vs rest)"), ("macro_f1", "Macro F1"),
]
LEVELS = ("image", "series")


@dataclass
class CVConfig:
    train: TrainConfig  # the per-fold training; its `out` is the cross-validation folder
    folds: int = 5
    fold_seed: int | None = None  # seed of the fold assignment; None: the training seed

    def to_dict(self) -> dict:
        return {"train": self.train.to_dict(), "folds": self.folds, "fold_seed": self.resolved_fold_seed()}

    def resolved_fold_seed(self) -> int:
        return self.train.seed if self.fold_seed is None else self.fold_seed


@dataclass
class CVResult:
    out: Path
    folds: list[dict]  # per fold: sizes, seconds and {"image": metrics, "series": metrics}
    summary: dict  # {level: {metric: {"mean", "std", "n"}}}
    pooled: dict  # {level: metrics} over all out-of-fold predictions together
    seconds: float
    fold_of: dict = field(default_factory=dict)  # sample key -> fold


def _metrics(labels, probs, classes, threshold, groups) -> dict:
    image = point_metrics(labels, probs, classes, decide(probs, classes, threshold))
    _, series_labels, series_probs = aggregate_by_group(labels, probs, groups)
    series = point_metrics(series_labels, series_probs, classes, decide(series_probs, classes, threshold))
    keep = lambda m: {k: v for k, v in m.items() if isinstance(v, (int, float))}  # noqa: E731
    return {"image": keep(image), "series": keep(series)}


def summarise_folds(fold_metrics: list[dict]) -> dict:
    """Mean and sample standard deviation (ddof=1) over folds of every metric, per level; folds where a
    metric is undefined (e.g. ROC-AUC of a fold without both classes) are left out and counted in n."""
    summary = {}
    for level in LEVELS:
        summary[level] = {}
        for name, _ in METRICS:
            values = np.array([m[level].get(name, np.nan) for m in fold_metrics], float)
            values = values[np.isfinite(values)]
            summary[level][name] = {
                "mean": float(values.mean()) if len(values) else float("nan"),
                "std": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
                "n": int(len(values)),
            }
    return summary


def _cell(entry: dict) -> str:
    if entry["n"] == 0:
        return "n/a"
    return f"{entry['mean']:.3f} ± {entry['std']:.3f}" if entry["n"] > 1 else f"{entry['mean']:.3f}"


def markdown_table(summary: dict, pooled: dict) -> list[str]:
    lines = ["| metric | per image (mean ± sd) | per series (mean ± sd) | pooled out-of-fold, image | "
             "pooled out-of-fold, series |", "|---|---|---|---|---|"]
    for name, label in METRICS:
        if all(summary[level][name]["n"] == 0 for level in LEVELS):
            continue
        pooled_cells = [f"{pooled[level][name]:.3f}" if name in pooled[level] else "n/a" for level in LEVELS]
        lines.append(f"| {label} | {_cell(summary['image'][name])} | {_cell(summary['series'][name])} | "
                     f"{pooled_cells[0]} | {pooled_cells[1]} |")
    return lines


def fold_lines(folds: list[dict]) -> list[str]:
    header = ["fold", "test images", "test series", "train", "val", "best epoch", "seconds"]
    header += [f"{label} ({level})" for level in LEVELS for name, label in METRICS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for fold in folds:
        cells = [str(fold["fold"]), str(fold["test_images"]), str(fold["test_series"]), str(fold["train_images"]),
                 str(fold["val_images"]), str(fold["best_epoch"]), f"{fold['seconds']:.0f}"]
        cells += [f"{fold[level][name]:.3f}" if name in fold[level] else "n/a"
                  for level in LEVELS for name, _ in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _write_folds_csv(path: Path, folds: list[dict]) -> None:
    columns = ["fold", "test_images", "test_series", "train_images", "val_images", "best_epoch", "seconds"]
    columns += [f"{level}_{name}" for level in LEVELS for name, _ in METRICS]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for fold in folds:
            writer.writerow([fold[c] for c in columns[:7]] +
                            [fold[level].get(name, "") for level in LEVELS for name, _ in METRICS])


def _test_logits(predictor, config: TrainConfig, rows, memo: FeatureMemo) -> torch.Tensor:
    """The test fold's logits. A frozen backbone without TTA: its head on the memo's plain-view features
    (the very forward pass the model makes, head(backbone(x)), without running the backbone again);
    otherwise the checkpoint's full inference path."""
    model = predictor.model
    if uses_feature_cache(model, config.feature_cache) and not predictor.preprocessing.tta_hflip:
        augmentation = settings.augmentation_policy(config)
        views = config.feature_views if augmentation is not None else 0
        features = subset_features(model, predictor.preprocessing, rows, views, augmentation, config.seed,
                                   DistContext(device=predictor.device), predictor.device, memo=memo)[0]
        return head_logits(model.head, features, predictor.device)
    return predictor.logits_uint8(rows, max(config.batch_size, 128))


def _run_folds(config: CVConfig, data, samples, labels, groups, fold_of, classes, fractions, oof_probs, oof_pred,
               thresholds, memo: FeatureMemo) -> list[dict]:
    """Train and test every fold; fills the out-of-fold arrays and returns one row per fold."""
    base, out = config.train, Path(config.train.out)
    folds = []
    for k in range(config.folds):
        fold_started = time.perf_counter()
        fold_dir = out / f"fold-{k}"
        fold_dir.mkdir(parents=True, exist_ok=True)
        test_index = np.flatnonzero(fold_of == k)
        rest = np.flatnonzero(fold_of != k)
        names = grouped_stratified_split(labels[rest].tolist(), [groups[i] for i in rest], fractions,
                                         config.resolved_fold_seed() + 1 + k)
        by_split = {"train": [samples[i] for i, n in zip(rest, names) if n == "train"],
                    "val": [samples[i] for i, n in zip(rest, names) if n == "val"],
                    "test": [samples[i] for i in test_index]}
        split_csv = fold_dir / f"fold-{SPLIT_CSV}"
        write_split_csv(split_csv, data.catalogue.root, classes, by_split)
        log.info("fold %d/%d: train %d, val %d, test %d images", k + 1, config.folds,
                 *(len(by_split[n]) for n in ("train", "val", "test")))
        run = train(replace(base, out=str(fold_dir), split="grouped", split_file=str(split_csv)), feature_memo=memo)
        predictor = Predictor.from_checkpoint(run.best_checkpoint, base.device)
        logits = _test_logits(predictor, base, data.decoded.images.subset(test_index), memo)
        probs = predictor.probabilities_from_logits(logits)
        thresholds[k] = predictor.threshold
        oof_probs[test_index] = probs
        oof_pred[test_index] = decide(probs, classes, predictor.threshold)
        metrics = _metrics(labels[test_index], probs, classes, predictor.threshold, [groups[i] for i in test_index])
        best_epoch = predictor.loaded.payload.get("best_epoch")
        folds.append({"fold": k, "test_images": len(test_index), "test_series": len(set(groups[i] for i in test_index)),
                      "train_images": len(by_split["train"]), "val_images": len(by_split["val"]),
                      "best_epoch": best_epoch, "seconds": round(time.perf_counter() - fold_started, 1),
                      "threshold": predictor.threshold, **metrics})
        log.info("fold %d: image balanced accuracy %.3f, series balanced accuracy %.3f", k,
                 metrics["image"]["balanced_accuracy"], metrics["series"]["balanced_accuracy"])

    return folds


def cross_validate(config: CVConfig) -> CVResult:
    """Train and test `config.folds` models; write cv.md, cv.json, folds.csv and predictions.csv.

    Args:
        config: the per-fold TrainConfig (its `out` is the cross-validation folder), the number of folds and
            the seed of the fold assignment.

    Returns:
        A CVResult: per-fold metrics, their mean and standard deviation per image and per series, the pooled
        out-of-fold metrics, the wall time and each image's fold.
    """
    base = config.train
    if config.folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {config.folds}")
    if not 0.0 < base.val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {base.val_fraction}")
    if not base.cache:
        log.warning("decode cache off: every fold decodes the images again")
    out = Path(base.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    prep = settings.preprocessing(base)
    # One decode (into the cache every fold's training then loads) and one series inference for all folds.
    data = prepare_data(base.data, base.classes, prep, out / SPLIT_CSV, seed=base.seed, workers=base.workers,
                        progress=base.progress, cache=settings.cache_settings(base), write_split=False)
    classes = data.catalogue.classes
    samples = [replace(s, group=g) for s, g in zip(data.decoded.samples, data.grouping.groups)]
    labels = np.array([s.label for s in samples], np.int64)
    groups = [s.group for s in samples]
    fold_of = np.array(grouped_stratified_folds(labels.tolist(), groups, config.folds, config.resolved_fold_seed()))
    (out / "config.json").write_text(json.dumps({"cv": config.to_dict(), "preprocessing": prep.to_dict(),
                                                 "series": data.grouping.summary}, indent=2))
    log.info("%d-fold cross-validation over %d images in %d series", config.folds, len(samples),
             data.grouping.summary["groups"])

    fractions = SplitFractions(1.0 - base.val_fraction, base.val_fraction, 0.0)
    oof_probs = np.zeros((len(samples), len(classes)))
    oof_pred = np.zeros(len(samples), np.int64)
    thresholds = [None] * config.folds
    cache_folder = settings.cache_settings(base).resolve()
    # A frozen backbone's features are computed once for all folds (and kept beside the decode cache).
    memo = FeatureMemo(cache_folder / "features" if cache_folder is not None else None)
    folds = _run_folds(config, data, samples, labels, groups, fold_of, classes, fractions, oof_probs, oof_pred,
                       thresholds, memo)
    summary = summarise_folds(folds)
    # Pooled: every image's out-of-fold prediction at once (thresholds are each fold's own).
    pooled_image = point_metrics(labels, oof_probs, classes, oof_pred)
    series_ids, series_labels, series_probs = aggregate_by_group(labels, oof_probs, groups)
    series_fold = {groups[i]: int(fold_of[i]) for i in range(len(samples))}
    series_pred = np.array([decide(p[None], classes, thresholds[series_fold[g]])[0]
                            for g, p in zip(series_ids, series_probs)], np.int64)
    pooled_series = point_metrics(series_labels, series_probs, classes, series_pred)
    number = lambda m: {k: v for k, v in m.items() if isinstance(v, (int, float))}  # noqa: E731
    pooled = {"image": number(pooled_image), "series": number(pooled_series)}
    seconds = time.perf_counter() - started

    with open(out / "predictions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "slice_index", "group", "fold", "label", "predicted", *[f"p_{c}" for c in classes]])
        for i, s in enumerate(samples):
            writer.writerow([s.path, "" if s.slice_index is None else s.slice_index, s.group, int(fold_of[i]),
                             classes[labels[i]], classes[oof_pred[i]], *[f"{p:.6f}" for p in oof_probs[i]]])
    _write_folds_csv(out / "folds.csv", folds)
    result = {"disclaimer": DISCLAIMER, "config": config.to_dict(), "classes": classes,
              "images": len(samples), "series": int(data.grouping.summary["groups"]),
              "summary": summary, "pooled": pooled, "folds": folds, "seconds": round(seconds, 1),
              "std": "sample standard deviation over folds (ddof=1)"}
    (out / "cv.json").write_text(json.dumps(result, indent=2))
    t = base
    lines = [f"# {config.folds}-fold grouped cross-validation: {t.model} on {t.data} ({', '.join(classes)})", "",
             f"> {DISCLAIMER}", "",
             f"{len(samples)} images in {data.grouping.summary['groups']} inferred series; no series in two folds. "
             f"Image size {prep.image_size} px, {t.epochs} epochs max (patience {t.patience}), seed {t.seed}, "
             f"validation {t.val_fraction:.0%} of the training folds' series. Per series = mean probability of "
             f"its slices. Mean ± sample sd over folds; wall time {seconds:.0f} s.", ""]
    lines += markdown_table(summary, pooled)
    lines += ["", "## Per fold", ""] + fold_lines(folds)
    (out / "cv.md").write_text("\n".join(lines) + "\n")
    return CVResult(out, folds, summary, pooled, seconds, {s.key: int(f) for s, f in zip(samples, fold_of)})
