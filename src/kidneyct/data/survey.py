"""A dataset looked over before training: which images form one CT series (`series_groups`, `kidneyct data
groups`) and whether a run's split leaks near-duplicate slices from training into its test or validation
images (`audit_split`, `kidneyct data audit`)."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

from kidneyct.data.audit import leakage_audit
from kidneyct.data.catalogue import build_catalogue
from kidneyct.data.decode import decode_samples
from kidneyct.data.groups import infer_groups, series_view, summarise, write_groups_csv
from kidneyct.data.prepare import report_skipped
from kidneyct.data.splits import read_split_csv
from kidneyct.preprocess import Preprocessing
from kidneyct.run_folder import RunFolder


def series_groups(data: str | Path, classes: str = "all", workers: int | None = None,
                  out: str | Path | None = None) -> dict:
    """Infer the CT series of a class-folder dataset from its images.

    Args:
        data: the dataset folder above the class folders.
        classes: the classes to include ("all", or names joined by commas).
        workers: decoding processes (default: one per core).
        out: write one group id per image to this CSV.

    Returns:
        The grouping's summary: series and images per class, how the groups were found, label conflicts (with up
        to ten examples), the time decoding and grouping took, and the CSV written.
    """
    catalogue = build_catalogue(data, classes)
    started = time.perf_counter()
    decoded = decode_samples(catalogue.samples, series_view(), workers=workers)
    decoded_at = time.perf_counter()
    report_skipped(catalogue.skipped + decoded.skipped)
    grouping = infer_groups(decoded.samples, decoded.images)
    summary = summarise(grouping, decoded.samples, catalogue.classes)
    summary["seconds"] = {"decode": round(decoded_at - started, 2),
                          "grouping": round(time.perf_counter() - decoded_at, 2)}
    summary["label_conflict_examples"] = [
        [decoded.samples[a].key, decoded.samples[b].key, round(s, 4)] for a, b, s in grouping.label_conflicts[:10]]
    if out:
        write_groups_csv(out, catalogue.root, decoded.samples, catalogue.classes, grouping)
        summary["csv"] = str(out)
    return summary


def audit_split(split_csv: str | Path, data: str | Path | None = None, query: str = "test",
                out: str | Path | None = None) -> dict:
    """The leakage audit of a run's split: `query` images (test or val) with near-duplicates among its training
    images, on the fixed view series are inferred on.

    Args:
        split_csv: a run's split.csv.
        data: the dataset folder (default: the one the run's config.json names).
        query: "test" or "val".
        out: also write the audit here as JSON.
    """
    split_csv = Path(split_csv)
    config_path = RunFolder.of(split_csv).config_json
    train_config = json.loads(config_path.read_text()).get("train", {}) if config_path.exists() else {}
    data = data or train_config.get("data")
    if data is None:
        raise ValueError(f"--data is needed: no config.json beside {split_csv}")
    with open(split_csv, newline="") as handle:
        classes = list(dict.fromkeys(row["label"] for row in csv.DictReader(handle)))
    splits = read_split_csv(split_csv, data, classes)
    prep = series_view(Preprocessing(window_level=train_config.get("window_level", 40.0),
                                     window_width=train_config.get("window_width", 400.0)))
    train, queried = decode_samples(splits["train"], prep), decode_samples(splits[query], prep)
    result = leakage_audit(train.images, train.samples, queried.images, queried.samples)
    if out:
        Path(out).write_text(json.dumps(result, indent=2))
    return result
