"""The built-in default job end to end, shrunk: phantoms -> seed-cnn -> evaluation report."""

import json

from kidneyct.experiments.demo import run_demo


def test_demo_writes_a_synthetic_labelled_report_on_series_disjoint_phantoms(tmp_path):
    result = run_demo(tmp_path, n=48, epochs=1, image_size=96, device="cpu", phantom_size=96)
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert (tmp_path / "report" / "report.html").is_file()
    assert metrics["data"]["synthetic"] and metrics["data"]["split_kind"] == "grouped"
    assert "SYNTHETIC" in (tmp_path / "report" / "report.md").read_text()
    assert 0.0 <= metrics["metrics"]["accuracy"]["value"] <= 1.0
    assert result.html.is_file()
