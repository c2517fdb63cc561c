import json

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from kidneyct.evaluation.metrics import bootstrap_metrics, point_metrics
from kidneyct.experiments.evaluate import evaluate


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


def test_evaluate_writes_metrics_plots_and_reports(trained_run, tmp_path):
    result = evaluate(trained_run.best_checkpoint, out=tmp_path / "report", device="cpu", n_boot=50,
                      progress=False, workers=1)
    for name in ("metrics.json", "predictions.csv", "confusion_matrix.png", "roc.png", "pr.png",
                 "training_curves.png", "report.html", "report.md"):
        assert (tmp_path / "report" / name).stat().st_size > 0, name
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["data"]["synthetic"] is True
    assert "series-disjoint" in metrics["data"]["split_description"]
    for key in ("accuracy", "macro_f1", "tumor_sensitivity", "tumor_specificity", "roc_auc", "pr_auc"):
        assert 0 <= metrics["metrics"][key]["value"] <= 1
    counts = np.array(metrics["metrics"]["confusion_matrix"]["counts"])
    assert counts.sum() == metrics["metrics"]["n"] == trained_run.split_sizes["test"]
    html = result.html.read_text()
    assert "not a medical device" in html and "SYNTHETIC" in html and "data:image/png;base64" in html
    assert "not a medical device" in result.markdown.read_text()


def test_evaluate_reports_series_metrics_and_leakage_audit(trained_run, tmp_path):
    result = evaluate(trained_run.best_checkpoint, out=tmp_path / "r", device="cpu", n_boot=50,
                      progress=False, workers=1)
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    series = metrics["series_metrics"]
    assert series["bootstrap"]["unit"] == "series" and metrics["metrics"]["bootstrap"]["unit"] == "series"
    assert 1 <= series["n"] <= metrics["metrics"]["n"]
    audit = metrics["leakage_audit"]
    assert audit["n_query"] == metrics["metrics"]["n"] and audit["n_train"] == trained_run.split_sizes["train"]
    assert audit["near_duplicates"] == 0  # the default split is series-disjoint
    text = result.markdown.read_text()
    assert "Per series" in text and "Leakage audit" in text and "series-disjoint" in text


def test_series_aggregation_means_probabilities_per_group():
    from kidneyct.evaluation.series import aggregate_by_group

    labels = np.array([0, 0, 1, 1, 1])
    probs = np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.4, 0.6], [0.6, 0.4]])
    ids, series_labels, series_probs = aggregate_by_group(labels, probs, ["a", "a", "b", "b", "c"])
    assert ids == ["a", "b", "c"] and series_labels.tolist() == [0, 1, 1]
    np.testing.assert_allclose(series_probs, [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
