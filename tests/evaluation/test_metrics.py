import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from kidneyct.evaluation.metrics import bootstrap_metrics, point_metrics


def test_point_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    probs = np.clip(rng.random((200, 1)) * 0.6 + 0.4 * (y[:, None] == 0), 0, 1)
    probs = np.hstack([probs, 1 - probs])  # class 0 is Tumor
    m = point_metrics(y, probs, ["Tumor", "Normal"])
    assert m["macro_f1"] == pytest.approx(f1_score(y, probs.argmax(1), average="macro"))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y == 0, probs[:, 0]))
    predicted_tumor = probs.argmax(1) == 0
    assert m["tumor_sensitivity"] == pytest.approx(predicted_tumor[y == 0].mean())
    assert m["tumor_specificity"] == pytest.approx((~predicted_tumor)[y == 1].mean())


def test_bootstrap_intervals_bracket_the_estimate_and_shrink_with_data():
    rng = np.random.default_rng(1)

    def width(n):
        y = rng.integers(0, 2, n)
        correct = rng.random(n) < 0.8
        pred = np.where(correct, y, 1 - y)
        probs = np.eye(2)[pred] * 0.8 + 0.1
        r = bootstrap_metrics(y, probs, ["Tumor", "Normal"], n_boot=300, seed=0)
        acc = r["accuracy"]
        assert acc["ci_low"] <= acc["value"] <= acc["ci_high"]
        return acc["ci_high"] - acc["ci_low"]

    assert width(2000) < width(100)
