"""Grouped, class-stratified k-fold cross-validation, optionally repeated over several fold assignments:
one training per fold, the out-of-fold predictions of every image, and the numbers a recipe is chosen by.

Series are inferred once, by the same `infer_groups` the grouped split uses, and dealt whole to the folds
(no series in two folds), each class folder on its own, so Tumor and Normal series land in the same folds
whether or not other classes take part. For fold k, fold k is the test set; a validation set (early
stopping, calibration, operating point) is carved from the other folds' series, again grouped and
stratified, so the test fold never steers training. The images are decoded once: every fold's training
loads the decode cache the first pass wrote. Repeat r deals the folds with seed fold_seed + r.

Reported: the mean and sd over folds of the decision metrics, pooled out-of-fold metrics, and for choosing
recipes the pooled out-of-fold ROC-AUC, sensitivity at specificity 0.90 and specificity at sensitivity
0.90, per image and per series, averaged over repeats with bootstrap intervals over series; with
`compare`, the paired difference to another run on the same folds.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from kidneyct.config import RECIPES, TrainConfig, apply_recipe
from kidneyct.data.prepare import PreparedData, prepare_data
from kidneyct.data.catalogue import Catalogue
from kidneyct.data.prepare import csv_roots
from kidneyct.data.splits import (SplitFractions, fold_strata, grouped_stratified_folds, grouped_stratified_split,
                                  split_strata, write_split_csv)
from kidneyct.experiments import cv_report as report
from kidneyct.experiments.evaluate import segmenter_logits
from kidneyct.experiments.fold_store import FoldResult, fold_identity, interrupted_training, load_fold, save_fold
from kidneyct.inference.predictor import Predictor
from kidneyct.labels import decide, positive_index
from kidneyct.checkpoint.model import write_ensemble
from kidneyct.training import settings
from kidneyct.training.distributed import DistContext
from kidneyct.training.engine import head_logits
from kidneyct.training.features import FeatureMemo, subset_features, uses_feature_cache
from kidneyct.run_folder import SPLIT_CSV, RunFolder
from kidneyct.training.train import train

LEVELS, METRICS = report.LEVELS, report.METRICS

log = logging.getLogger(__name__)


def _test_logits(predictor, config: TrainConfig, rows, memo: FeatureMemo) -> np.ndarray:
    """The test fold's logits. A frozen backbone without TTA: its head on the memo's plain-view features
    (the very forward pass the model makes, head(backbone(x)), without running the backbone again);
    otherwise the checkpoint's full inference path."""
    model = predictor.backend.model
    if uses_feature_cache(model, config.feature_cache) and not predictor.preprocessing.tta_hflip:
        augmentation = settings.augmentation_policy(config)
        views = config.feature_views if augmentation is not None else 0
        features = subset_features(model, predictor.preprocessing, rows, views, augmentation, config.seed,
                                   DistContext(device=predictor.device), predictor.device, memo=memo)[0]
        return head_logits(model.head, features, predictor.device).numpy()
    return predictor.logits(rows, max(config.batch_size, 128))



@dataclass
class CVConfig:
    """A cross-validation.

    Args:
        train: the per-fold training; its `out` is the cross-validation folder.
        folds: number of folds.
        fold_seed: seed of the fold assignment (None: the training seed); repeat r uses fold_seed + r.
        repeats: fold assignments to run; numbers are averaged over them.
        compare: a recipe name (run on the same folds into `out/compare-NAME`) or a finished cv folder to
            compare with, pairwise on the same images and folds.
        keep_models: write `out/ensemble.pt`, the first repeat's fold models as one checkpoint.
        bootstrap: resamples of series for the intervals.
        resume: reuse each fold already finished in `train.out` with the same settings and test images (to
            add repeats to a finished run, or finish one that was killed) instead of training it again, and
            continue a fold killed mid-training from its last.pt (same settings, same split).
    """

    train: TrainConfig
    folds: int = 5
    fold_seed: int | None = None
    repeats: int = 1
    compare: str | None = None
    keep_models: bool = False
    bootstrap: int = 1000
    resume: bool = False

    def to_dict(self) -> dict:
        return {"train": self.train.to_dict(), "folds": self.folds, "fold_seed": self.resolved_fold_seed(),
                "repeats": self.repeats, "compare": self.compare, "keep_models": self.keep_models,
                "bootstrap": self.bootstrap}

    def resolved_fold_seed(self) -> int:
        return self.train.seed if self.fold_seed is None else self.fold_seed


@dataclass
class CVResult:
    out: Path
    folds: list[dict]  # per fold of every repeat: sizes, seconds and {"image": metrics, "series": metrics}
    summary: dict  # {level: {metric: {"mean", "std", "n"}}} over all folds
    pooled: dict  # {level: metrics} over repeat 0's out-of-fold predictions
    seconds: float
    fold_of: dict = field(default_factory=dict)  # sample key -> fold (repeat 0)
    ranking: dict = field(default_factory=dict)  # {evaluation: {level: {statistic: interval}}}
    comparison: dict | None = None
    ensemble: Path | None = None


@dataclass
class FoldPlan:
    """What every fold of every repeat shares: the data, the canonical series and the fold assignments."""

    data: PreparedData
    samples: list
    labels: np.ndarray
    groups: list[str]
    folds: np.ndarray  # int [repeats, N]; -1: never tested (the training sources of a leave-one-source-out run)

    @property
    def classes(self) -> list[str]:
        return self.data.catalogue.classes

    @property
    def n_folds(self) -> int:
        return int(self.folds.max()) + 1

    @property
    def tested(self) -> np.ndarray:
        """Positions of the samples some fold tests: all of them, but for leave-one-source-out."""
        return np.flatnonzero(self.folds[0] >= 0)

    def key(self, sample) -> str:
        return self.data.catalogue.relative_key(sample)


def _canonical_groups(samples, groups: list[str], catalogue: Catalogue) -> list[str]:
    """Inferred series named by their first member's path under the data root (prefixed by the source with
    several), so that runs on other class sets (whose inferred series carry other numbers) name them alike.
    Patients of `file` and `pattern` sources keep their names."""
    series = {source.name for source in catalogue.sources if source.grouping == "series"}
    first: dict[str, str] = {}
    for sample, group in zip(samples, groups):
        if sample.source in series:
            name = catalogue.relative_key(sample)
            first[group] = min(first.get(group, name), name)
    return [first.get(g, g) for g in groups]


def _fold_assignment(config: CVConfig, samples: list, groups: list[str]) -> np.ndarray:
    """Fold per sample and repeat: grouped and stratified by `fold_strata`; with a test source, fold 0 is
    that source and every other sample is -1 (training only)."""
    test_source = config.train.test_source
    if test_source is not None:
        names = sorted({s.source for s in samples})
        if test_source not in names or len(names) < 2:
            raise ValueError(f"--test-source {test_source!r} must be one of several sources; the run has {names}")
        held = np.array([0 if s.source == test_source else -1 for s in samples])
        return np.tile(held, (config.repeats, 1))
    strata = fold_strata(samples)
    return np.array([grouped_stratified_folds(strata, groups, config.folds, config.resolved_fold_seed() + r)
                     for r in range(config.repeats)])


def plan_folds(config: CVConfig) -> FoldPlan:
    """The data decoded once, its canonical series and every repeat's fold assignment (written to config.json)."""
    base, out = config.train, Path(config.train.out)
    prep = settings.preprocessing(base)
    # One decode (into the cache every fold's training then loads) and one series inference for all folds.
    data = prepare_data(settings.sources(base), base.classes, prep, RunFolder(out).split_csv, seed=base.seed,
                        workers=base.workers, progress=base.progress, cache=settings.cache_settings(base),
                        write_split=False)
    groups = _canonical_groups(data.decoded.samples, data.grouping.groups, data.catalogue)
    samples = [replace(s, group=g) for s, g in zip(data.decoded.samples, groups)]
    folds = _fold_assignment(config, samples, groups)
    RunFolder(out).config_json.write_text(json.dumps({"cv": config.to_dict(), "preprocessing": prep.to_dict(),
                                                      "series": data.grouping.summary}, indent=2))
    return FoldPlan(data, samples, np.array([s.label for s in samples], np.int64), groups, folds)


def fold_dir(out: Path, repeat: int, fold: int) -> Path:
    return out / (f"fold-{fold}" if repeat == 0 else f"repeat-{repeat}/fold-{fold}")


def _run_fold(config: CVConfig, plan: FoldPlan, repeat: int, k: int, memo: FeatureMemo) -> FoldResult:
    """Fold k of one repeat: trained and tested now, or (with `resume`) the same fold finished before."""
    folder = fold_dir(Path(config.train.out), repeat, k)
    test_index = np.flatnonzero(plan.folds[repeat] == k)
    identity = fold_identity(config.train, [plan.key(plan.samples[i]) for i in test_index])
    finished = load_fold(folder, identity) if config.resume else None
    if finished is not None:
        log.info("repeat %d, fold %d/%d: reusing the finished fold in %s", repeat, k + 1, config.folds, folder)
        return finished
    result = _train_fold(config, plan, repeat, k, folder, memo)
    save_fold(folder, identity, result)
    return result


def fold_split(config: CVConfig, plan: FoldPlan, repeat: int, k: int) -> dict[str, np.ndarray]:
    """The plan's sample indices of fold k's "train", "val" and "test" splits: the fold is the test split, the
    other folds are split into train and validation, grouped and stratified, with a seed of their own."""
    fold_of = plan.folds[repeat]
    test_index, rest = np.flatnonzero(fold_of == k), np.flatnonzero(fold_of != k)
    fractions = SplitFractions(1.0 - config.train.val_fraction, config.train.val_fraction, 0.0)
    names = np.asarray(grouped_stratified_split(split_strata([plan.samples[i] for i in rest]),
                                                [plan.groups[i] for i in rest], fractions,
                                                config.resolved_fold_seed() + 1 + k + 1000 * repeat))
    return {"train": rest[names == "train"], "val": rest[names == "val"], "test": test_index}


def _train_fold(config: CVConfig, plan: FoldPlan, repeat: int, k: int, folder: Path, memo: FeatureMemo) -> FoldResult:
    """Train fold k of one repeat and test it: its row, test probabilities and best checkpoint."""
    base = config.train
    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    by_split = {name: [plan.samples[i] for i in index] for name, index in fold_split(config, plan, repeat, k).items()}
    split_csv = folder / f"fold-{SPLIT_CSV}"
    written_before = split_csv.read_bytes() if split_csv.exists() else None
    write_split_csv(split_csv, csv_roots(plan.data.catalogue), plan.classes, by_split)
    log.info("repeat %d, fold %d/%d: train %d, val %d, test %d images", repeat, k + 1, plan.n_folds,
             *(len(by_split[n]) for n in ("train", "val", "test")))
    fold_config = replace(base, out=str(folder), split="grouped", split_file=str(split_csv))
    # A fold killed mid-training continues from its last epoch (training repeats an uninterrupted run exactly).
    resume = config.resume and interrupted_training(fold_config, written_before == split_csv.read_bytes())
    if resume:
        log.info("repeat %d, fold %d: continuing its interrupted training from %s", repeat, k + 1,
                 RunFolder(folder).last)
    trained = train(fold_config, resume=resume, feature_memo=memo)
    return evaluate_fold(config, plan, repeat, k, trained.best_checkpoint, started, memo)


def evaluate_fold(config: CVConfig, plan: FoldPlan, repeat: int, k: int, checkpoint: Path, started: float,
                  memo: FeatureMemo | None = None) -> FoldResult:
    """Fold k's model (`checkpoint`) on its test split: the fold's metrics row, probabilities and label maps."""
    split = fold_split(config, plan, repeat, k)
    test_index = split["test"]
    predictor = Predictor.open(checkpoint, config.train.device)
    test_views, masks, kidney_fraction = plan.data.decoded.images.subset(test_index), None, None
    if predictor.checkpoint.outputs.maps:
        logits, masks, kidney_fraction = segmenter_logits(predictor, test_views)
    else:
        logits = _test_logits(predictor, config.train, test_views, memo)
    probs = predictor.probabilities(logits)
    metrics = report.fold_metrics(plan.labels[test_index], probs, plan.classes, predictor.threshold,
                                  [plan.groups[i] for i in test_index])
    row = {"repeat": repeat, "fold": k, "test_images": len(test_index),
           "test_series": len({plan.groups[i] for i in test_index}), "train_images": len(split["train"]),
           "val_images": len(split["val"]), "best_epoch": predictor.checkpoint.progress.best_epoch,
           "seconds": round(time.perf_counter() - started, 1), "threshold": predictor.threshold, **metrics}
    log.info("repeat %d, fold %d: image balanced accuracy %.3f, series balanced accuracy %.3f", repeat, k,
             metrics["image"]["balanced_accuracy"], metrics["series"]["balanced_accuracy"])
    return FoldResult(row, probs, checkpoint, masks, kidney_fraction)


def _baseline(config: CVConfig) -> tuple[report.OutOfFold, str] | None:
    """The run to compare with: a finished cv folder, or the named recipe run now on the same folds."""
    if config.compare is None:
        return None
    folder = Path(config.compare)
    if (folder / "predictions.csv").is_file():
        return report.read_out_of_fold(folder / "predictions.csv"), str(folder)
    if config.compare not in RECIPES:
        raise ValueError(f"--compare {config.compare!r} is neither a cv folder with predictions.csv nor a recipe "
                         f"({', '.join(sorted(RECIPES))})")
    runtime = {name: getattr(config.train, name) for name in ("data", "sources", "test_source", "device", "progress",
                                                             "workers", "cache", "cache_dir", "seed", "classes")}
    out = Path(config.train.out) / f"compare-{config.compare}"
    baseline = apply_recipe(replace(config.train, **runtime), config.compare)
    result = cross_validate(replace(config, train=replace(baseline, out=str(out)), compare=None, keep_models=False))
    return report.read_out_of_fold(result.out / "predictions.csv"), f"recipe {config.compare} ({out})"


def cross_validate(config: CVConfig) -> CVResult:
    """Train and test `config.folds` models per repeat; write cv.md, cv.json, folds.csv and predictions.csv
    (and ensemble.pt with `keep_models`).

    Args:
        config: the per-fold TrainConfig (its `out` is the cross-validation folder), folds, repeats, fold seed,
            what to compare with and whether to keep the fold models.

    Returns:
        A CVResult: per-fold metrics with their mean and sd, pooled out-of-fold metrics, the ranking statistics
        with bootstrap intervals, the paired comparison when asked for, the wall time and each image's fold.
    """
    base = config.train
    if config.folds < 2 and base.test_source is None:
        raise ValueError(f"cross-validation needs at least 2 folds, got {config.folds}")
    if config.repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {config.repeats}")
    if not 0.0 < base.val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {base.val_fraction}")
    if not base.cache:
        log.warning("decode cache off: every fold decodes the images again")
    out = Path(base.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    baseline = _baseline(config)  # first: a recipe baseline fills the decode cache this run then loads
    plan = plan_folds(config)
    tested = plan.tested
    planned = report.out_of_fold([plan.samples[i] for i in tested], plan.classes, plan.folds[:, tested],
                                 np.zeros((config.repeats, len(tested), len(plan.classes))))
    if baseline is not None and planned is not None:  # fail before hours of training, not after
        report.aligned(planned, baseline[0])
    log.info("%s x %d repeat(s) over %d images in %d groups (series or patients)",
             f"{plan.n_folds}-fold cross-validation" if base.test_source is None else
             f"leave-one-source-out ({base.test_source})", config.repeats, len(plan.samples),
             plan.data.grouping.summary["groups"])
    cache_folder = settings.cache_settings(base).resolve()
    # A frozen backbone's features are computed once for all folds (and kept beside the decode cache).
    memo = FeatureMemo(cache_folder / "features" if cache_folder is not None else None)
    n, k = len(plan.samples), len(plan.classes)
    probs, predicted = np.zeros((config.repeats, n, k)), np.zeros((config.repeats, n), np.int64)
    rows, thresholds, members = [], {}, []
    masks: np.ndarray | None = None  # repeat 0's predicted label maps, when the model segments
    for repeat in range(config.repeats):
        for fold in range(plan.n_folds):
            fold_result = _run_fold(config, plan, repeat, fold, memo)
            row, fold_probs = fold_result.row, fold_result.probs
            test = plan.folds[repeat] == fold
            probs[repeat, test] = fold_probs
            predicted[repeat, test] = decide(fold_probs, plan.classes, row["threshold"])
            thresholds[(repeat, fold)] = row["threshold"]
            rows.append(row)
            if repeat == 0 and fold_result.masks is not None:
                if masks is None:
                    masks = np.zeros((n,) + fold_result.masks.shape[1:], np.uint8)
                masks[test] = fold_result.masks
            members += [fold_result.checkpoint] if repeat == 0 else []
    return _finish(config, plan, rows, probs, predicted, thresholds, members, baseline, started, masks)


@dataclass
class _Tested:
    """The out-of-fold predictions of the samples some fold tested (all of them, but in leave-one-source-out)."""

    samples: list
    labels: np.ndarray
    groups: list[str]
    folds: np.ndarray  # int [R, N]
    probs: np.ndarray  # [R, N, K]
    predicted: np.ndarray  # int [R, N]

    @classmethod
    def of(cls, plan: FoldPlan, probs: np.ndarray, predicted: np.ndarray) -> "_Tested":
        index = plan.tested
        return cls([plan.samples[i] for i in index], plan.labels[index], [plan.groups[i] for i in index],
                   plan.folds[:, index], probs[:, index], predicted[:, index])


def _finish(config, plan: FoldPlan, rows, probs, predicted, thresholds, members, baseline, started,
            masks: np.ndarray | None = None) -> CVResult:
    out = Path(config.train.out)
    ensemble = write_ensemble(members, RunFolder(out).ensemble) if config.keep_models else None
    tested = _Tested.of(plan, probs, predicted)
    summary = report.summarise_folds(rows)
    by_group = {g: thresholds[(0, int(f))] for g, f in zip(tested.groups, tested.folds[0])}
    pooled = report.pooled_metrics(tested.labels, tested.probs[0], tested.predicted[0], plan.classes, tested.groups,
                                   by_group)
    oof = report.out_of_fold(tested.samples, plan.classes, tested.folds, tested.probs)
    ranked = report.ranking(oof, config.bootstrap) if oof is not None else {}
    compared = report.compare(oof, baseline[0], config.bootstrap) if baseline is not None and oof is not None else None
    sources = _per_source(config, plan, tested, oof, ranked,
                          None if masks is None else masks[plan.tested])
    seconds = time.perf_counter() - started
    report.write_predictions(out / "predictions.csv", tested.samples, plan.classes, tested.labels, tested.folds,
                             tested.probs, tested.predicted)
    report.write_folds_csv(out / "folds.csv", rows)
    result = {"disclaimer": report.DISCLAIMER, "config": config.to_dict(), "classes": plan.classes,
              "images": len(tested.samples), "series": len(set(tested.groups)),
              "sources": plan.data.sources_summary(), "per_source": sources, "summary": summary, "pooled": pooled,
              "ranking": ranked,
              "comparison": compared, "compared_with": baseline[1] if baseline else None, "folds": rows,
              "seconds": round(seconds, 1), "ensemble": str(ensemble) if ensemble else None,
              "std": "sample standard deviation over folds (ddof=1)"}
    (out / "cv.json").write_text(json.dumps(result, indent=2))
    title, setup = _description(config, plan, len(tested.samples), seconds)
    (out / "cv.md").write_text(report.markdown(title, setup, summary, pooled, ranked, compared,
                                               baseline[1] if baseline else None, rows, sources))
    return CVResult(out, rows, summary, pooled, seconds,
                    {s.key: int(f) for s, f in zip(tested.samples, tested.folds[0])}, ranked, compared, ensemble)


def _per_source(config: CVConfig, plan: FoldPlan, tested: _Tested, oof, ranked: dict, predicted_masks=None) -> dict:
    """The table with a row per source and a pooled row (cv_report.source_table); per series or patient for
    sources that are not one slice per patient. `predicted_masks` (a segmenting model's, [N, S, S] over the
    tested slices of repeat 0) fills the Dice columns; without them they read n/a."""
    if oof is None:
        return {}
    pos = positive_index(plan.classes)
    called = tested.predicted == pos
    group_sources = {source.name for source in plan.data.sources if source.grouping != "file"}
    true_masks = plan.data.decoded.masks.subset(plan.tested)
    return report.source_table(oof, called, group_sources, config.bootstrap, true_masks=true_masks,
                               predicted_masks=predicted_masks, ranked=ranked)


def _description(config: CVConfig, plan: FoldPlan, images: int, seconds: float) -> tuple[str, str]:
    """cv.md's title and set-up paragraph."""
    base = config.train
    data = ", ".join(source.name for source in plan.data.sources)
    groups = len({plan.groups[i] for i in plan.tested})
    if base.test_source is not None:
        title = (f"Leave one source out x {config.repeats} repeat(s): {base.model} trained on the other sources, "
                 f"tested on {base.test_source} ({', '.join(plan.classes)})")
        others = ", ".join(s.name for s in plan.data.sources if s.name != base.test_source)
        split = (f"{images} test images in {groups} groups of {base.test_source}; training and validation from the "
                 f"other sources ({others}), validation {base.val_fraction:.0%} of their groups.")
    else:
        title = (f"{plan.n_folds}-fold grouped cross-validation x {config.repeats} repeat(s): {base.model} on "
                 f"{data if plan.data.catalogue.several else base.data} ({', '.join(plan.classes)})")
        kind = "groups (series or patients)" if plan.data.catalogue.several else "inferred series"
        first = config.resolved_fold_seed()
        split = (f"{images} images in {groups} {kind}; no group in two folds. Fold seeds {first}.."
                 f"{first + config.repeats - 1}, validation {base.val_fraction:.0%} of the "
                 "training folds' groups.")
    setup = (f"{split} Recipe {base.recipe}, image size {settings.preprocessing(base).image_size} px, "
             f"{base.epochs} epochs max (patience {base.patience}), seed {base.seed}. Per series = "
             f"{report.SERIES_RULE.describe(None)}, the study rule of `predict`. Wall time {seconds:.0f} s.")
    return title, setup
