"""A finished cross-validation's fold models tested again with other inference settings, without training: what
nnU-Net does when it chooses its post-processing on the cross-validation's outputs.

Only settings that act at validation and inference may change (RETEST_FIELDS); the weights are the fold models'.
Each fold model is given the new settings, recalibrated on its own validation split (its temperature and
threshold were fitted to the old settings' probabilities), written to the new folder and tested on its fold. The
cross-validation then finishes as `kidneyct cv` does (cv.md, cv.json, predictions.csv), compared, paired, with
the source run on the same folds.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import replace
from pathlib import Path

from kidneyct.checkpoint import read_checkpoint, write_checkpoint
from kidneyct.config import TrainConfig
from kidneyct.experiments.cv import (CVConfig, CVResult, cross_validate, evaluate_fold, fold_dir, fold_split,
                                     plan_folds)
from kidneyct.experiments.evaluate import segmenter_logits
from kidneyct.experiments.fold_store import FOLD_RESULT, fold_identity, save_fold
from kidneyct.inference.predictor import Predictor
from kidneyct.run_folder import SPLIT_CSV
from kidneyct.training.calibration import fit_calibration

log = logging.getLogger(__name__)

# TrainConfig fields that change nothing in training, only what a model infers (a segmenting model keeps its final
# weights, so not even the epoch chosen depends on them).
RETEST_FIELDS = ("midline_band", "midline_centre", "tta", "slice_probability")


def retest(source: str | Path, out: str | Path, changes: dict, device: str = "cpu") -> CVResult:
    """The cross-validation in `source` with its fold models tested again under `changes`.

    Args:
        source: a finished `kidneyct cv` folder (config.json and each fold's fold-result.json and checkpoint).
        out: the new cross-validation folder.
        changes: new values of RETEST_FIELDS, e.g. {"midline_band": 0.2}.
        device: where the fold models run.

    Returns:
        The CVResult of the new folder, compared with `source`.
    """
    source, out = Path(source), Path(out)
    unknown = sorted(set(changes) - set(RETEST_FIELDS))
    if unknown:
        raise ValueError(f"only {', '.join(RETEST_FIELDS)} can change without training; not {', '.join(unknown)}")
    stored = json.loads((source / "config.json").read_text())["cv"]
    train = replace(TrainConfig.from_dict(stored["train"]), **changes, out=str(out), device=device)
    config = CVConfig(train, stored["folds"], stored["fold_seed"], stored["repeats"], compare=str(source),
                      bootstrap=stored.get("bootstrap", 1000), resume=True)
    out.mkdir(parents=True, exist_ok=True)
    plan = plan_folds(config)
    for repeat in range(config.repeats):
        for k in range(plan.n_folds):
            _retest_fold(config, plan, repeat, k, fold_dir(source, repeat, k), fold_dir(out, repeat, k))
    return cross_validate(config)  # every fold is finished: it only reads them back and reports


def _retest_fold(config: CVConfig, plan, repeat: int, k: int, source: Path, folder: Path) -> None:
    started = time.perf_counter()
    record = json.loads((source / FOLD_RESULT).read_text())
    checkpoint = read_checkpoint(source / record["checkpoint"])
    segmentation = checkpoint.outputs.segmentation
    if segmentation is None:
        raise ValueError(f"{source}: not a segmenting model's fold; its inference settings cannot change")
    zoom = replace(segmentation.zoom, midline=config.train.midline_band, midline_centre=config.train.midline_centre)
    segmentation = replace(segmentation, zoom=zoom, mirror=config.train.tta)
    checkpoint = replace(checkpoint, outputs=replace(checkpoint.outputs, segmentation=segmentation,
                                                     slice_probability=config.train.slice_probability))
    changed = {name: getattr(config.train, name) for name in RETEST_FIELDS}
    if checkpoint.training is not None and checkpoint.training.config is not None:
        checkpoint = replace(checkpoint, training=replace(checkpoint.training, config=replace(
            checkpoint.training.config, **changed)))
    folder.mkdir(parents=True, exist_ok=True)
    path = write_checkpoint(checkpoint, folder / "best.pt")  # with the old calibration until refitted
    copy_run_record(source, folder, changed)
    test_fold(config, plan, repeat, k, path, started)


def test_fold(config: CVConfig, plan, repeat: int, k: int, path: Path, started: float) -> None:
    """The segmenting model at `path`, recalibrated on fold k's validation split (temperature and threshold
    refitted to its own probabilities, written back to `path`), tested on the fold and saved as its result."""
    split = fold_split(config, plan, repeat, k)
    checkpoint = read_checkpoint(path)
    val_logits, _, _ = segmenter_logits(Predictor.open(path, config.train.device),
                                     plan.data.decoded.images.subset(split["val"]))
    calibration, point = fit_calibration(val_logits, plan.labels[split["val"]], plan.classes, config.train.threshold,
                                         config.train.target_sensitivity)
    write_checkpoint(replace(checkpoint, calibration=calibration, operating_point=point), path)
    result = evaluate_fold(config, plan, repeat, k, path, started)
    save_fold(path.parent, fold_identity(config.train, [plan.key(plan.samples[i]) for i in split["test"]]), result)
    log.info("repeat %d, fold %d: tested (temperature %.3f, threshold %s)", repeat, k, calibration.temperature,
             None if point is None else round(point.threshold, 3))


def copy_run_record(source: Path, folder: Path, changed: dict) -> None:
    """The source fold's split and history beside the retested model, so the folder is a run folder like any (a
    shipped model is packaged from one); its config.json with the new setting."""
    for name in (SPLIT_CSV, f"fold-{SPLIT_CSV}", "metrics.csv"):
        if (source / name).is_file():
            shutil.copyfile(source / name, folder / name)
    if (source / "config.json").is_file():
        stored = json.loads((source / "config.json").read_text())
        stored["train"] = {**stored.get("train", {}), **changed, "out": str(folder)}
        (folder / "config.json").write_text(json.dumps(stored, indent=2))
