"""Trained segmenting models on the same split as one ensemble (kidneyct.models.ensemble.SegmentingEnsemble: the
mean of the members' slice and map logits), without training: finished cross-validations fold by fold
(`cv_ensemble`), or trained runs as one run folder (`ensemble_run`, what `make model` ships for several seeds).

Per fold, the members' fold models become one checkpoint, recalibrated on the fold's validation split (the same
split for every member: the runs must share their folds) and tested on the fold. The cross-validation then
finishes as `kidneyct cv` does (cv.md, cv.json, predictions.csv), compared, paired, with the first run. This
measures exactly what shipping the ensemble would: the product's two looks through the averaged model, not an
average of the runs' finished probabilities.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import replace
from pathlib import Path

from kidneyct.checkpoint import read_checkpoint, write_checkpoint
from kidneyct.checkpoint.model import write_ensemble
from kidneyct.config import TrainConfig
from kidneyct.experiments.cv import CVConfig, CVResult, cross_validate, fold_dir, plan_folds
from kidneyct.experiments.evaluate import split_logits
from kidneyct.experiments.fold_store import FOLD_RESULT
from kidneyct.experiments.retest import copy_run_record, test_fold
from kidneyct.run_folder import SPLIT_CSV, RunFolder
from kidneyct.training.calibration import fit_calibration

log = logging.getLogger(__name__)

FOLD_SPLIT = f"fold-{SPLIT_CSV}"  # each fold's train/val/test assignment, as `kidneyct cv` writes it


def cv_ensemble(sources: list[str | Path], out: str | Path, device: str = "cpu") -> CVResult:
    """The fold models of `sources` tested as ensembles, fold by fold.

    Args:
        sources: finished `kidneyct cv` folders of segmenting models with the same folds and validation splits
            (e.g. one recipe trained with two seeds and the same --fold-seed); the first is the comparison.
        out: the new cross-validation folder.
        device: where the models run.

    Returns:
        The CVResult of the new folder, compared with the first source.
    """
    sources, out = [Path(s) for s in sources], Path(out)
    if len(sources) < 2:
        raise ValueError("an ensemble needs at least two cross-validations")
    stored = [json.loads((s / "config.json").read_text())["cv"] for s in sources]
    first = stored[0]
    for source, other in zip(sources[1:], stored[1:]):
        shape = [(c["folds"], c["repeats"], c.get("fold_seed")) for c in (first, other)]
        if shape[0] != shape[1]:
            raise ValueError(f"{source}: folds, repeats or fold seed {shape[1]} differ from {sources[0]}'s {shape[0]}")
    train = replace(TrainConfig.from_dict(first["train"]), out=str(out), device=device)
    config = CVConfig(train, first["folds"], first["fold_seed"], first["repeats"], compare=str(sources[0]),
                      bootstrap=first.get("bootstrap", 1000), resume=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "members.json").write_text(json.dumps({"members": [str(s) for s in sources]}, indent=2))
    plan = plan_folds(config)
    for repeat in range(config.repeats):
        for k in range(plan.n_folds):
            _ensemble_fold(config, plan, repeat, k, [fold_dir(s, repeat, k) for s in sources], fold_dir(out, repeat, k))
    return cross_validate(config)  # every fold is finished: it only reads them back and reports


def ensemble_run(members: list[str | Path], folder: str | Path, sources: str | None = None,
                 device: str = "cpu") -> Path:
    """Trained runs on the same split (one recipe with several --seed, the later runs given the first's split.csv
    as --split-file) as one run folder: their ensemble checkpoint, recalibrated on the shared validation split,
    beside the first run's split and config, so evaluate and `benchmarks/shipped_model.py --reuse` take it like
    any run. Returns its best.pt.

    Args:
        members: the runs' best checkpoints.
        folder: the ensemble's run folder.
        sources: the sources file the runs trained on (default: the sources their checkpoints record).
        device: where the validation split is run.
    """
    folders = [RunFolder.of(Path(m)).path for m in members]
    _check_same_split(folders, SPLIT_CSV)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = write_ensemble(_segmenting([Path(m) for m in members]), folder / "best.pt")
    copy_run_record(folders[0], folder, {})
    logits, labels = split_logits(path, "val", sources, device)
    checkpoint = read_checkpoint(path)
    config = checkpoint.training.config
    calibration, point = fit_calibration(logits, labels, checkpoint.classes, config.threshold,
                                         config.target_sensitivity)
    return write_checkpoint(replace(checkpoint, calibration=calibration, operating_point=point), path)


def member_checkpoints(folds: list[Path]) -> list[Path]:
    """Each fold folder's tested checkpoint, after checking the folders split the data identically."""
    _check_same_split(folds, FOLD_SPLIT)
    return _segmenting([folder / json.loads((folder / FOLD_RESULT).read_text())["checkpoint"] for folder in folds])


def _segmenting(paths: list[Path]) -> list[Path]:
    for path in paths:
        if read_checkpoint(path).outputs.segmentation is None:
            raise ValueError(f"{path}: not a segmenting model")
    return paths


def _check_same_split(folders: list[Path], name: str) -> None:
    reference = _assignment(folders[0] / name)
    for folder in folders[1:]:
        if _assignment(folder / name) != reference:
            raise ValueError(f"{folder}: its {name} assigns images to train, val and test other than "
                             f"{folders[0]}'s: not the same split")


def _assignment(path: Path) -> dict:
    """Each image's split in a split file: (source, path, slice) -> "train" | "val" | "test"."""
    with open(path, newline="") as stream:
        return {(row.get("source", ""), row["path"], row.get("slice_index", "")): row["split"]
                for row in csv.DictReader(stream)}


def _ensemble_fold(config: CVConfig, plan, repeat: int, k: int, folds: list[Path], folder: Path) -> None:
    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    path = write_ensemble(member_checkpoints(folds), folder / "best.pt")
    copy_run_record(folds[0], folder, {})
    test_fold(config, plan, repeat, k, path, started)
    log.info("repeat %d, fold %d: ensemble of %d members tested", repeat, k, len(folds))
