import json

from kidneyct.config import TrainConfig
from kidneyct.experiments.compare import compare_splits


def test_compare_splits_tabulates_random_and_grouped(phantom_png, tmp_path):
    config = TrainConfig(data=str(phantom_png), out="", model="seed-cnn", image_size=96, epochs=1,
                         batch_size=16, device="cpu", progress=False, workers=1)
    summary = compare_splits(config, tmp_path, n_boot=20)
    assert summary["header"][1:] == ["random image split", "grouped (series-disjoint) split"]
    labels = [row[0] for row in summary["rows"]]
    assert "Accuracy (per image)" in labels and "Accuracy (per series)" in labels
    leak_row = summary["rows"][labels.index("Test images with a near-duplicate in training")]
    assert leak_row[2].startswith("0.0%")  # grouped: no near-duplicate across the split
    assert not leak_row[1].startswith("0.0%")  # random: phantom series leak across the split
    for kind in ("random", "grouped"):
        split_kind = json.loads((tmp_path / kind / "report" / "metrics.json").read_text())["data"]["split_kind"]
        assert split_kind == kind
    assert "random image split" in (tmp_path / "comparison.md").read_text()
