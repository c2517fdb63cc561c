"""Finished cross-validations on the same folds, their fold models tested as one ensemble per fold (the mean of the
members' slice and map logits through both looks), recalibrated on each fold's validation split and compared,
paired, with the first run (kidneyct.experiments.cv_ensemble). No training.

    python benchmarks/cv_ensemble.py runs/cv-seg-synth-midline runs/cv-seg-seed1 --out runs/cv-seg-ensemble

Writes the new folder's cv.md, cv.json and predictions.csv, and per fold best.pt: the ensemble checkpoint.
"""

from __future__ import annotations

import argparse
import logging

from kidneyct.experiments.cv_ensemble import cv_ensemble


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", help="finished `kidneyct cv` folders of segmenting models, same folds")
    parser.add_argument("--out", required=True, help="the new cross-validation folder")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    result = cv_ensemble(args.sources, args.out, args.device)
    print(f"{result.out / 'cv.md'}")
    return result


if __name__ == "__main__":
    main()
