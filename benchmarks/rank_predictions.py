"""Ranking statistics (and a paired comparison) from finished cross-validations' predictions.csv files,
without training anything: what `kidneyct cv` reports, recomputed, e.g. for runs made before a statistic
existed or to compare two runs afterwards. Several predictions files on the same folds are scored as one
ensemble (the mean of their out-of-fold tumor probabilities).

    python benchmarks/rank_predictions.py runs/cv-a/predictions.csv [runs/cv-c/predictions.csv ...]
        [--baseline runs/cv-b/predictions.csv]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kidneyct.experiments import cv_report as report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("predictions", nargs="+", help="a cv run's predictions.csv (several: their ensemble)")
    parser.add_argument("--baseline", default=None, help="another run's predictions.csv on the same folds")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args()
    oof = report.averaged([report.read_out_of_fold(Path(path)) for path in args.predictions])
    result = {"ranking": report.ranking(oof, args.bootstrap)}
    lines = report.ranking_lines(result["ranking"])
    if args.baseline:
        result["comparison"] = report.compare(oof, report.read_out_of_fold(Path(args.baseline)), args.bootstrap)
        lines += report.comparison_lines(result["comparison"], args.baseline)
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
