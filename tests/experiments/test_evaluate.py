import json

import numpy as np

from kidneyct.experiments.evaluate import evaluate


def test_evaluate_writes_metrics_plots_and_reports(trained_run, phantom_png, tmp_path):
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
    rows = metrics["per_source"]["rows"]  # one source: its row and the pooled row, the same slices
    assert list(rows) == [phantom_png.name, "pooled"] and rows["pooled"]["images"] == counts.sum()
    assert "Per source" in result.markdown.read_text()
    with open(tmp_path / "report" / "predictions.csv") as handle:
        assert handle.readline().startswith("path,slice_index,source,group,label,predicted")


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
