"""Finished cross-validations' fold models tested as one ensemble per fold: the same folds, recalibrated on each
fold's validation split, compared with the first run; runs that split the data differently are refused."""

import csv
import json
import shutil

import pytest

from kidneyct.checkpoint import read_checkpoint
from kidneyct.experiments.cv_ensemble import cv_ensemble, ensemble_run
from kidneyct.experiments.retest import retest


def _tumor_probabilities(folder) -> dict:
    with open(folder / "predictions.csv", newline="") as stream:
        return {(row["path"], row["fold"]): float(row["p_Tumor"]) for row in csv.DictReader(stream)}


def test_a_run_ensembled_with_itself_predicts_what_the_run_does(segmenting_cv, tmp_path):
    """Two identical members average to themselves: the ensemble, recalibrated on each fold's validation split,
    gives the run's own model recalibrated the same way (a retest with no change)."""
    ensembled = cv_ensemble([segmenting_cv, segmenting_cv], tmp_path / "ensemble")
    alone = retest(segmenting_cv, tmp_path / "alone", {})
    stored = json.loads((ensembled.out / "cv.json").read_text())
    assert stored["compared_with"] == str(segmenting_cv) and stored["comparison"] is not None
    assert json.loads((ensembled.out / "members.json").read_text())["members"] == [str(segmenting_cv)] * 2
    ours, theirs = _tumor_probabilities(ensembled.out), _tumor_probabilities(alone.out)
    assert ours.keys() == theirs.keys() and len(ours) > 0
    for key, value in ours.items():
        assert value == pytest.approx(theirs[key], abs=1e-4), key
    for k in (0, 1):
        checkpoint = read_checkpoint(ensembled.out / f"fold-{k}" / "best.pt")
        assert len(checkpoint.members) == 2
        assert "not refitted" not in checkpoint.calibration.method  # refitted on the fold's validation split


def test_runs_with_other_folds_are_refused(segmenting_cv, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(segmenting_cv, other)
    split = other / "fold-1" / "fold-split.csv"
    with open(split, newline="") as stream:
        rows = list(csv.DictReader(stream))
    moved = [dict(row, split="train" if row["split"] == "val" else row["split"]) for row in rows]
    assert moved != rows
    with open(split, "w", newline="") as stream:  # its validation images moved to train
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(moved)
    with pytest.raises(ValueError, match="not the same split"):
        cv_ensemble([segmenting_cv, other], tmp_path / "ensemble")


def test_runs_on_one_split_become_one_recalibrated_run_folder(segmenting_cv, tmp_path):
    """What `make model` ships for several seeds: a second training on the first one's split, both as one run."""
    from dataclasses import replace

    from kidneyct.config import TrainConfig
    from kidneyct.training.train import train

    first = segmenting_cv / "fold-0"
    stored = TrainConfig.from_dict(json.loads((first / "config.json").read_text())["train"])
    second = train(replace(stored, seed=1, out=str(tmp_path / "seed-1"), split_file=str(first / "split.csv")))
    path = ensemble_run([first / "best.pt", second.best_checkpoint], tmp_path / "ensemble")
    checkpoint = read_checkpoint(path)
    assert path.parent == tmp_path / "ensemble" and len(checkpoint.members) == 2
    assert "not refitted" not in checkpoint.calibration.method  # fitted on the shared validation split
    assert (path.parent / "split.csv").read_text() == (first / "split.csv").read_text()
    with pytest.raises(ValueError, match="not the same split"):
        ensemble_run([first / "best.pt", segmenting_cv / "fold-1" / "best.pt"], tmp_path / "mixed")
