"""`kidneyct data probe`: how much of the class a data set gives away outside the patient, and how much of
a model's accuracy comes from outside the kidneys (kidneyct.evaluation.probe), on series it never saw:
the test folds of a cross-validation or a checkpoint's own test split. Over several sources (a sources file), the
source probe: how well the background names the source, and what a cross-validation's scores know of it."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from kidneyct.about import DISCLAIMER
from kidneyct.data.cache import CacheSettings
from kidneyct.data.catalogue import build_catalogue
from kidneyct.data.decode import decode_samples
from kidneyct.data.groups import series_view
from kidneyct.data.prepare import prepare_data
from kidneyct.data.splits import grouped_stratified_folds, read_split_csv
from kidneyct.data.sources import resolve_sources
from kidneyct.evaluation.probe import (CONDITIONS, background_only, occlusion_predictions, occlusion_scores,
                                       source_probe)
from kidneyct.experiments.cv_report import read_out_of_fold
from kidneyct.inference.predictor import Predictor
from kidneyct.labels import positive_index
from kidneyct.run_folder import RunFolder

log = logging.getLogger(__name__)


@dataclass
class ProbeSlices:
    """Every slice of the probed data on the series view, with its class, source and patient."""

    classes: list[str]
    samples: list
    units: list[np.ndarray]

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples])


def probe_slices(data, classes: str, out: Path, seed: int, workers: int | None, cache: CacheSettings) -> ProbeSlices:
    prepared = prepare_data(data, classes, series_view(), out / "probe-split.csv", seed=seed, workers=workers,
                            progress=False, cache=cache, write_split=False)
    samples = [replace(s, group=g) for s, g in zip(prepared.decoded.samples, prepared.grouping.groups)]
    return ProbeSlices(prepared.catalogue.classes, samples, [row.astype(np.float32) / 255.0 for row in prepared.decoded.images])


def background_probe(slices: ProbeSlices, folds: int, seed: int) -> dict:
    """Grouped cross-validated background-only classifier of the class, on the series view of every image."""
    strata = [f"{s.source}:{s.origin or s.label}" for s in slices.samples]
    fold_of = np.array(grouped_stratified_folds(strata, [s.group for s in slices.samples], folds, seed))
    result = background_only(slices.units, slices.labels, fold_of, positive_index(slices.classes))
    result["classes"] = slices.classes
    return result


def source_background_probe(slices: ProbeSlices, folds: int, seed: int) -> dict:
    """The same background-only classifier asked for the source: how well the table, field of view and export
    name the hospital (patients grouped, folds stratified by source)."""
    names = sorted({s.source for s in slices.samples})
    sources = np.array([names.index(s.source) for s in slices.samples])
    fold_of = np.array(grouped_stratified_folds([s.source for s in slices.samples], [s.group for s in slices.samples],
                                                folds, seed))
    result = background_only(slices.units, sources, fold_of, None)
    result["sources"] = names
    return result


def source_score_probe(cv_dir: Path) -> dict:
    """`source_probe` of a cross-validation's out-of-fold tumor scores (its first repeat)."""
    oof = read_out_of_fold(Path(cv_dir) / "predictions.csv")
    if oof.sources is None:
        raise ValueError(f"{cv_dir}/predictions.csv names no sources: a run on one dataset has no source to probe")
    return source_probe(oof.tumor[0], oof.origins, oof.sources)


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


def run_probe(data: str | Path | None, out: str | Path, cv_dir: str | Path | None = None,
              checkpoint: str | Path | None = None, classes: str = "tumor,normal", folds: int = 5, seed: int = 0,
              device: str = "auto", workers: int | None = None, cache: CacheSettings = CacheSettings(),
              sources_file: str | Path | None = None) -> dict:
    """The probes; writes probe.json and probe.md under `out`.

    Args:
        data: the dataset folder above the class folders (or None with `sources_file`).
        out: the report folder.
        cv_dir: a `kidneyct cv` folder: its first repeat's fold models on their test folds (the occlusion probe)
            or, over several sources, its out-of-fold scores (the source probe).
        checkpoint: or one checkpoint on its split.csv's test images. Neither: the background probes only.
        classes: the task of the background probe.
        folds, seed: the background probes' grouped folds.
        sources_file: a sources TOML: several sources add the source probe (the source from the background, and
            how much the cv's scores know the source); the occlusion probe reads one dataset folder only.

    Returns:
        {"background": ..., "occlusion": ... or None, "source": ... or None, "disclaimer": ...}.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sources = resolve_sources(None if data is None else str(data), None if sources_file is None else str(sources_file))
    several = len(sources) > 1
    slices = probe_slices(sources, classes, out, seed, workers, cache)
    result = {"disclaimer": DISCLAIMER, "data": ", ".join(f"{s.name} ({s.root})" for s in sources),
              "background": background_probe(slices, folds, seed), "occlusion": None, "source": None}
    if several:
        result["source"] = {"background": source_background_probe(slices, folds, seed),
                            "scores": source_score_probe(Path(cv_dir)) if cv_dir is not None else None}
    elif cv_dir is not None or checkpoint is not None:
        models = _models(Path(cv_dir) if cv_dir else None, Path(checkpoint) if checkpoint else None)
        result["occlusion"] = occlusion_probe_of(sources[0].root, models, device, workers, cache)
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
    source = result.get("source")
    if source:
        lines += _source_lines(source)
    return "\n".join(lines) + "\n"


def _source_lines(source: dict) -> list[str]:
    background = source["background"]
    score = background["background_only"]
    lines = ["", "## Source probe", "", "### The source from the background", "",
             f"The same thumbnails asked which source a slice comes from ({', '.join(background['sources'])}): "
             f"balanced accuracy **{score['balanced_accuracy']:.3f}** (chance {background['chance']:.3f}). Where "
             "one source brings the tumors and another only normal kidneys, this is how easily the class could be "
             "read off the hospital."]
    scores = source["scores"]
    if not scores:
        return lines + ["", "Give `--cv DIR` (a cross-validation over these sources) to probe a model's scores."]
    lines += ["", "### What the model's out-of-fold scores know of the source", "",
              "| source | Tumor vs the rest within the source: ROC-AUC | tumor / other slices | Normal slices: median "
              "p(tumor) | 90th percentile |", "|---|---|---|---|---|"]
    for name, entry in scores["within"].items():
        normal = scores["normals"].get(name)
        spread = f"{normal['median']:.3f} | {normal['q90']:.3f}" if normal else "- | -"
        lines.append(f"| {name} | {entry['roc_auc']:.3f} | {entry['tumor']} / {entry['other']} | {spread} |")
    lines += ["", f"Pooled over sources: ROC-AUC {scores['pooled_roc_auc']:.3f}; within sources (mean weighted by "
                  f"tumors): {scores['mean_within_roc_auc']:.3f}. A pooled number far above the within-source ones "
                  "is earned between sources, where the source itself can carry the class.", "",
              "Normal kidneys of two sources told apart by the tumor score alone (ROC-AUC 0.5: the score does not "
              "know where a normal kidney was scanned):", ""]
    lines += [f"- {pair['higher']} normals scored above {pair['lower']} normals: ROC-AUC {pair['roc_auc']:.3f}"
              for pair in scores["between_normals"]]
    return lines
