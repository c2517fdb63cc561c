"""Train one model on a random and on a grouped split of the same data and tabulate both.

The random image-level split is what most published results on the Kaggle CT kidney data use; the
grouped split keeps every inferred series on one side. The gap between the columns is the leak.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from kidneyct.about import DISCLAIMER
from kidneyct.config import TrainConfig
from kidneyct.evaluation.tables import HEADLINE_METRICS, NOT_AVAILABLE, interval_cell, markdown_table
from kidneyct.experiments.evaluate import evaluate
from kidneyct.run_folder import REPORT_METRICS
from kidneyct.training.train import train


def comparison_table(results: dict) -> list[list[str]]:
    rows = []
    for level, key in (("image", "metrics"), ("series", "series_metrics")):
        for metric, label in HEADLINE_METRICS:
            cells = [interval_cell(results[kind][key].get(metric)) for kind in ("random", "grouped")]
            if any(c != NOT_AVAILABLE for c in cells):
                rows.append([f"{label} (per {level})", *cells])
    audit = [results[kind]["leakage_audit"] for kind in ("random", "grouped")]
    rows.append(["Test images with a near-duplicate in training",
                 *[f"{a['near_duplicate_share']:.1%} ({a['near_duplicates']}/{a['n_query']})" if a else "n/a"
                   for a in audit]])
    rows.append(["Test images / series", *[f"{results[k]['metrics']['n']} / {results[k]['series_metrics']['n']}"
                                           for k in ("random", "grouped")]])
    return rows


def compare_splits(config: TrainConfig, out: str | Path, n_boot: int = 1000) -> dict:
    out = Path(out)
    results = {}
    for kind in ("random", "grouped"):
        run = train(replace(config, out=str(out / kind), split=kind))
        evaluation = evaluate(run.best_checkpoint, device=config.device, n_boot=n_boot, progress=config.progress)
        results[kind] = json.loads((evaluation.out / REPORT_METRICS).read_text())
    table = comparison_table(results)
    header = ["metric", "random image split", "grouped (series-disjoint) split"]
    lines = [f"# Random vs grouped split: {config.model} on {config.data} ({config.classes})", "",
             f"> {DISCLAIMER}", "",
             f"Same model, settings and seed ({config.seed}); only the split differs. Values with 95% "
             "bootstrap intervals over series.", "", *markdown_table(header, table)]
    (out / "comparison.md").write_text("\n".join(lines) + "\n")
    summary = {"config": config.to_dict(), "header": header, "rows": table,
               "runs": {k: str(out / k) for k in results}}
    (out / "comparison.json").write_text(json.dumps(summary, indent=2))
    return summary
