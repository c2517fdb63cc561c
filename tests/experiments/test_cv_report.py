import numpy as np
import pytest

from kidneyct.experiments.cv_report import OutOfFold, averaged


def _run(keys, tumor, folds):
    origins = ["Tumor" if k.startswith("t") else "Normal" for k in keys]
    return OutOfFold(list(keys), origins, [k[:2] for k in keys], np.array(tumor, float), np.array(folds))


def test_averaged_runs_score_each_shared_image_by_the_mean_of_their_scores():
    a = _run(["t1", "t2", "n1", "n2"], [[0.9, 0.4, 0.2, 0.6]], [[0, 1, 0, 1]])
    b = _run(["n2", "t1", "t2", "n1", "c1"], [[0.2, 0.5, 0.8, 0.0, 0.7]], [[1, 0, 1, 0, 0]])  # c1: only in b
    ensemble = averaged([a, b])
    scores = dict(zip(ensemble.keys, ensemble.tumor[0]))
    assert scores == pytest.approx({"t1": 0.7, "t2": 0.6, "n1": 0.1, "n2": 0.4})
    assert ensemble.origins == ["Normal", "Normal", "Tumor", "Tumor"]


def test_averaged_refuses_runs_tested_in_other_folds():
    a = _run(["t1", "n1"], [[0.9, 0.2]], [[0, 1]])
    b = _run(["t1", "n1"], [[0.8, 0.1]], [[1, 0]])
    with pytest.raises(ValueError, match="same folds"):
        averaged([a, b])


def test_one_run_averaged_is_that_run():
    a = _run(["t2", "n1", "t1"], [[0.4, 0.2, 0.9]], [[1, 0, 0]])
    alone = averaged([a])
    assert dict(zip(alone.keys, alone.tumor[0])) == {"t2": 0.4, "n1": 0.2, "t1": 0.9}
    assert dict(zip(alone.keys, alone.origins)) == {"t2": "Tumor", "n1": "Normal", "t1": "Tumor"}
