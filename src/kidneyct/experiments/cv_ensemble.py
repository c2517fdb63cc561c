"""Finished cross-validations of segmenting models on the same folds, their fold models tested as one ensemble
(kidneyct.models.ensemble.SegmentingEnsemble: the mean of the members' slice and map logits), without training.

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

from kidneyct.checkpoint import read_checkpoint
from kidneyct.checkpoint.model import write_ensemble
from kidneyct.config import TrainConfig
from kidneyct.experiments.cv import CVConfig, CVResult, cross_validate, fold_dir, plan_folds
from kidneyct.experiments.fold_store import FOLD_RESULT
from kidneyct.experiments.retest import copy_run_record, test_fold
from kidneyct.run_folder import SPLIT_CSV

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


def member_checkpoints(folds: list[Path]) -> list[Path]:
    """Each fold folder's tested checkpoint, after checking the folders split the data identically."""
    reference = _assignment(folds[0] / FOLD_SPLIT)
    for folder in folds[1:]:
        if _assignment(folder / FOLD_SPLIT) != reference:
            raise ValueError(f"{folder}: its {FOLD_SPLIT} assigns images to train, val and test other than "
                             f"{folds[0]}'s: not the same fold")
    paths = [folder / json.loads((folder / FOLD_RESULT).read_text())["checkpoint"] for folder in folds]
    for path in paths:
        if read_checkpoint(path).outputs.segmentation is None:
            raise ValueError(f"{path}: not a segmenting model")
    return paths


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
