"""The shipped weights with another inference setting (no training): rebuild the run folder they came from (fold 0
of CV_COMMAND's folds, from the data and the fold seed), retest them there with the setting, recalibrated on that
fold's validation split, then package them as `benchmarks/shipped_model.py --reuse` would.

    python benchmarks/shipped_retest.py --midline-centre --work runs/shipped-retest

The weights stay bit for bit; the checkpoint's inference settings, calibration, held-out rows and card change.
Only settings that act at validation and inference (kidneyct.experiments.retest.RETEST_FIELDS) can change.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import shipped_model
from kidneyct.checkpoint import read_checkpoint, write_checkpoint
from kidneyct.config import recipe_config
from kidneyct.data.prepare import csv_roots
from kidneyct.data.splits import write_split_csv
from kidneyct.experiments.cv import CVConfig, fold_split, plan_folds
from kidneyct.experiments.retest import test_fold
from kidneyct.experiments.ship import package
from kidneyct.run_folder import RunFolder

WEIGHTS = Path("src/kidneyct/weights/default.pt")


def rebuild_fold(work: Path, changes: dict) -> tuple[CVConfig, Path]:
    """The shipped checkpoint with `changes`, in fold 0's run folder of the shipped recipe's cross-validation."""
    shipped = read_checkpoint(WEIGHTS)
    trained = shipped.training.config
    base = recipe_config(shipped_model.RECIPE, "", str(work), sources=shipped_model.SOURCES_FILE, seed=trained.seed,
                         device="cpu", progress=False, **changes)
    config = CVConfig(base, folds=5, fold_seed=0)
    work.mkdir(parents=True, exist_ok=True)
    plan = plan_folds(config)
    split = fold_split(config, plan, 0, 0)
    rebuilt = Counter(plan.classes[plan.samples[i].label] for i in (*split["train"], *split["val"]))
    recorded = sum((Counter(source.counts) for source in shipped.sources), Counter())
    if rebuilt != recorded:  # the data or the split code changed since: these are not the weights' folds
        raise SystemExit(f"fold 0 rebuilt trains and validates on {dict(rebuilt)}, the shipped weights on "
                         f"{dict(recorded)}")
    folder = work / "fold-0"
    folder.mkdir(parents=True, exist_ok=True)
    by_split = {name: [plan.samples[i] for i in index] for name, index in split.items()}
    write_split_csv(RunFolder(folder).split_csv, csv_roots(plan.data.catalogue), plan.classes, by_split)
    segmentation = shipped.outputs.segmentation
    zoom = replace(segmentation.zoom, midline=base.midline_band, midline_centre=base.midline_centre)
    checkpoint = replace(shipped, outputs=replace(shipped.outputs, segmentation=replace(segmentation, zoom=zoom,
                                                                                        mirror=base.tta)),
                         training=replace(shipped.training, config=replace(trained, **changes)))
    path = write_checkpoint(checkpoint, RunFolder(folder).best)
    (folder / "config.json").write_text(json.dumps({"train": base.to_dict()}, indent=2))
    test_fold(config, plan, 0, 0, path, time.perf_counter())
    return config, path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("runs/shipped-retest"))
    parser.add_argument("--midline-centre", action=argparse.BooleanOptionalAction, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.chdir(shipped_model.ROOT)
    changes = {"midline_centre": args.midline_centre} if args.midline_centre is not None else {}
    _, path = rebuild_fold(args.work, changes)
    shipped = package(path, shipped_model.SPEC, Path("src/kidneyct/weights"), Path("docs/model-card.md"))
    print(f"shipped {shipped}; model card docs/model-card.md")


if __name__ == "__main__":
    main()
