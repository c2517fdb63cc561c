"""`kidneyct data probe`: how much of the class a data set gives away outside the patient, and how much of
a model's accuracy comes from outside the kidneys (kidneyct.evaluation.probe), on series it never saw:
the test folds of a cross-validation or a checkpoint's own test split."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from kidneyct.about import DISCLAIMER
from kidneyct.data.cache import CacheSettings
from kidneyct.data.catalogue import build_catalogue
from kidneyct.data.decode import decode_samples
from kidneyct.data.groups import series_view
from kidneyct.data.prepare import prepare_data
from kidneyct.data.splits import grouped_stratified_folds, read_split_csv
from kidneyct.evaluation.probe import CONDITIONS, background_only, occlusion_predictions, occlusion_scores
from kidneyct.inference.predictor import Predictor
from kidneyct.labels import positive_index
from kidneyct.run_folder import RunFolder

log = logging.getLogger(__name__)


def background_probe(data: str | Path, classes: str, out: Path, folds: int, seed: int, workers: int | None,
                     cache: CacheSettings) -> dict:
    """Grouped cross-validated background-only classifier on the series view of every image."""
    prepared = prepare_data(data, classes, series_view(), out / "probe-split.csv", seed=seed, workers=workers,
                            progress=False, cache=cache, write_split=False)
    samples = [replace(s, group=g) for s, g in zip(prepared.decoded.samples, prepared.grouping.groups)]
    strata = [s.origin or str(s.label) for s in samples]
    fold_of = np.array(grouped_stratified_folds(strata, [s.group for s in samples], folds, seed))
    units = [row.astype(np.float32) / 255.0 for row in prepared.decoded.images]
    labels = np.array([s.label for s in samples])
    result = background_only(units, labels, fold_of, positive_index(prepared.catalogue.classes))
    result["classes"] = prepared.catalogue.classes
    return result


def _models(cv_dir: Path | None, checkpoint: Path | None) -> list[tuple[Path, Path]]:
    """(checkpoint, split CSV) pairs whose test images the models never saw in training."""
    if checkpoint is not None:
        return [(checkpoint, RunFolder.of(checkpoint).split_csv)]
    pairs = sorted((RunFolder(path).best, RunFolder(path).split_csv) for path in Path(cv_dir).glob("fold-*"))
    if not pairs:
        raise FileNotFoundError(f"{cv_dir} holds no fold-*/best.pt: not a kidneyct cv folder")
    return pairs


def occlusion_probe_of(data: Path, models: list[tuple[Path, Path]], device: str, workers: int | None,
                       cache: CacheSettings) -> dict:
    """The models' accuracy on their own test images with kidneys kept / blanked / control blanked, pooled."""
    pooled: dict[str, list] = {name: [] for name in (*CONDITIONS, "usable", "labels")}
    classes = None
    for path, split_csv in models:
        predictor = Predictor.open(path, device)
        classes = predictor.classes
        test = read_split_csv(split_csv, data, classes)["test"]
        everything = build_catalogue(data, classes).samples  # the cache a training on this folder left
        rows = decode_samples(test, predictor.preprocessing, workers=workers, progress=False, cache=cache,
                              superset=everything).images
        units = [row.astype(np.float32) / 255.0 for row in rows]

        def predict(images: np.ndarray) -> np.ndarray:
            return predictor.probabilities_of(np.rint(images * 255.0).astype(np.uint8))

        predictions = occlusion_predictions(predict, units)
        for name in (*CONDITIONS, "usable"):
            pooled[name].append(predictions[name])
        pooled["labels"].append(np.array([s.label for s in test]))
        log.info("probe: %s, %d test images, %d with a kidney region", path, len(units), predictions["usable"].sum())
    merged = {name: np.concatenate(values) for name, values in pooled.items()}
    result = occlusion_scores(merged, merged.pop("labels"), positive_index(classes))
    result["models"] = [str(path) for path, _ in models]
    return result


def run_probe(data: str | Path, out: str | Path, cv_dir: str | Path | None = None,
              checkpoint: str | Path | None = None, classes: str = "tumor,normal", folds: int = 5, seed: int = 0,
              device: str = "auto", workers: int | None = None, cache: CacheSettings = CacheSettings()) -> dict:
    """Both probes; writes probe.json and probe.md under `out`.

    Args:
        data: the dataset folder above the class folders.
        out: the report folder.
        cv_dir: a `kidneyct cv` folder: its first repeat's fold models on their test folds.
        checkpoint: or one checkpoint on its split.csv's test images. Neither: the background probe only.
        classes: the task of the background probe.
        folds, seed: the background probe's grouped folds.

    Returns:
        {"background": ..., "occlusion": ... or None, "disclaimer": ...}.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(data).expanduser().resolve()
    result = {"disclaimer": DISCLAIMER, "data": str(data),
              "background": background_probe(data, classes, out, folds, seed, workers, cache), "occlusion": None}
    if cv_dir is not None or checkpoint is not None:
        models = _models(Path(cv_dir) if cv_dir else None, Path(checkpoint) if checkpoint else None)
        result["occlusion"] = occlusion_probe_of(data, models, device, workers, cache)
    (out / "probe.json").write_text(json.dumps(result, indent=2))
    (out / "probe.md").write_text(markdown(result))
    return result


def markdown(result: dict) -> str:
    background = result["background"]
    score = background["background_only"]
    lines = ["# Shortcut probe", "", f"> {DISCLAIMER}", "",
             f"Data: {result['data']} ({', '.join(background['classes'])}).", "",
             "## Background only", "",
             f"A logistic regression on 24 px thumbnails of every slice with the body blanked (table, field of view, "
             f"air and annotations left), grouped {score['n']}-image cross-validation: balanced accuracy "
             f"**{score['balanced_accuracy']:.3f}** (chance {background['chance']:.3f}), tumor ROC-AUC "
             f"{score['roc_auc']:.3f}. Far above chance means the classes can be told apart outside the patient.", ""]
    occlusion = result.get("occlusion")
    if occlusion:
        lines += ["## Kidneys blanked vs kept", "",
                  f"{occlusion['usable']} test slices of {len(occlusion['models'])} model(s) with a kidney region "
                  f"({occlusion['left_out']} left out: no spine found, e.g. coronal cuts). Chance "
                  f"{occlusion['chance']:.3f}.", "", "| condition | balanced accuracy | tumor ROC-AUC |", "|---|---|---|"]
        for name in CONDITIONS:
            lines.append(f"| {name.replace('_', ' ')} | {occlusion[name]['balanced_accuracy']:.3f} | "
                         f"{occlusion[name]['roc_auc']:.3f} |")
        share = occlusion["share_outside_kidneys"]
        lines += ["", f"Share of the above-chance balanced accuracy left with the kidneys blanked: **{share:.2f}** "
                      "(0: all of it comes from the kidneys; 1: none of it does). The control blanks an equal region "
                      "further forward in the body, so blanking alone is not what moves the number."]
    return "\n".join(lines) + "\n"
