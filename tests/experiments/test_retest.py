"""A finished cross-validation's fold models retested with another inference setting: no training, the same folds,
each model recalibrated on its own validation split, compared with the source run."""

import json

import pytest

from kidneyct.checkpoint import read_checkpoint
from kidneyct.experiments.retest import retest


def test_retest_changes_only_the_inference_setting_and_compares_on_the_same_folds(segmenting_cv, tmp_path):
    # Where the slice probability comes from acts only at inference too (a segmenting model keeps its final weights).
    result = retest(segmenting_cv, tmp_path / "retested", {"midline_band": 0.2, "midline_centre": True,
                                                           "slice_probability": "map"})
    stored = json.loads((result.out / "cv.json").read_text())
    assert stored["compared_with"] == str(segmenting_cv) and stored["comparison"] is not None
    assert stored["config"]["train"]["midline_band"] == 0.2
    source_folds = {r["fold"]: r for r in json.loads((segmenting_cv / "cv.json").read_text())["folds"]}
    for row in stored["folds"]:
        assert row["test_images"] == source_folds[row["fold"]]["test_images"]
        assert row["train_images"] == source_folds[row["fold"]]["train_images"]
        checkpoint = read_checkpoint(result.out / f"fold-{row['fold']}" / "best.pt")
        source = read_checkpoint(segmenting_cv / f"fold-{row['fold']}" / "best.pt")
        assert checkpoint.outputs.segmentation.zoom.midline == 0.2
        assert checkpoint.outputs.segmentation.zoom.midline_centre
        assert checkpoint.training.config.midline_band == 0.2
        assert checkpoint.outputs.slice_probability == checkpoint.training.config.slice_probability == "map"
        retested = json.loads((result.out / f"fold-{row['fold']}" / "fold-result.json").read_text())["probs"]
        assert retested != json.loads((segmenting_cv / f"fold-{row['fold']}" / "fold-result.json").read_text())["probs"]
        folder = result.out / f"fold-{row['fold']}"  # a run folder like any: a shipped model is packaged from one
        assert (folder / "split.csv").read_text() == (segmenting_cv / f"fold-{row['fold']}" / "split.csv").read_text()
        assert json.loads((folder / "config.json").read_text())["train"]["midline_band"] == 0.2
        for name, weights in source.state_dict.items():  # the same weights: nothing was trained
            assert weights.equal(checkpoint.state_dict[name]), name


def test_retest_refuses_settings_that_need_training(segmenting_cv, tmp_path):
    with pytest.raises(ValueError, match="without training"):
        retest(segmenting_cv, tmp_path / "retested", {"epochs": 3})

