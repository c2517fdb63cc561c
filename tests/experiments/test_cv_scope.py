"""benchmarks/cv_scope.py: the scope gate out of fold, from what each fold kept of its test slices."""

import csv
import json
from pathlib import Path

import pytest

import kidneyct
from kidneyct.checkpoint import read_checkpoint


def test_each_fold_keeps_the_kidney_shares_its_scope_gate_reads(segmenting_cv, benchmark_script):
    """cv_scope must count what `predict` applies: the overview's kidney share against the checkpoint's gate, not
    the label maps (whose zooms add kidney the gate never sees)."""
    module = benchmark_script("cv_scope")
    data = Path(json.loads((segmenting_cv / "config.json").read_text())["cv"]["train"]["data"])
    for fold in (0, 1):
        folder = segmenting_cv / f"fold-{fold}"
        record = json.loads((folder / "fold-result.json").read_text())
        shares = record["kidney_fraction"]
        assert len(shares) == len(record["probs"]) and all(0.0 <= share <= 1.0 for share in shares)
        gate = read_checkpoint(folder / "best.pt").outputs.segmentation.min_kidney_fraction
        scope = module.fold_scope(folder)
        assert scope.tolist() == [share >= gate for share in shares]
        with open(folder / "fold-split.csv", newline="") as handle:
            tests = [row["path"] for row in csv.DictReader(handle) if row["split"] == "test"]
        model = kidneyct.load(folder / "best.pt")
        for path, inside in zip(tests[:4], scope):
            assert model.predict(data / path).slices[0].in_scope == bool(inside), path


def test_a_fold_stored_without_kidney_shares_is_refused(segmenting_cv, benchmark_script, tmp_path):
    module = benchmark_script("cv_scope")
    folder = tmp_path / "fold-0"
    folder.mkdir()
    record = json.loads((segmenting_cv / "fold-0" / "fold-result.json").read_text())
    (folder / "fold-result.json").write_text(json.dumps({**record, "kidney_fraction": None}))
    with pytest.raises(ValueError, match="retest its run unchanged"):
        module.fold_scope(folder)


def test_listed_slices_are_the_ones_the_table_counts_in_scope(segmenting_cv, benchmark_script):
    """--list names exactly the slices of a class that the scope table counts in scope, each at or above its gate."""
    module = benchmark_script("cv_scope")
    table = module.scope_table(segmenting_cv)
    for source, origins in table.items():
        for origin, entry in origins.items():
            listed = [row for row in module.slices_in_scope(segmenting_cv, origin) if (row["source"] or "all") == source]
            assert len(listed) == round(entry["slices"] * entry["in_scope"]), (source, origin)
            assert all(row["kidney_share"] >= row["gate"] - 1e-4 and 0.0 <= row["p_tumor"] <= 1.0 for row in listed)
