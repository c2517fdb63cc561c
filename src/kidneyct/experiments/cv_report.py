"""What a cross-validation reports: per-fold metrics and their mean and sd, pooled out-of-fold metrics,
the ranking statistics a recipe is chosen by (with bootstrap intervals over series), paired comparisons
with another run on the same folds, and the files that hold them (cv.md, cv.json, folds.csv,
predictions.csv)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kidneyct.about import DISCLAIMER
from kidneyct.evaluation import tables
from kidneyct.evaluation.metrics import point_metrics
from kidneyct.evaluation.per_source import Scored, group_units, per_source_table, table_lines
from kidneyct.evaluation.ranking import RANKING_STATISTICS, Units, bootstrap_interval, paired_comparison
from kidneyct.evaluation.series import aggregate_by_group
from kidneyct.study.rule import DEFAULT_RULE, study_score
from kidneyct.labels import decide, positive_index

METRICS = tables.HEADLINE_METRICS
# A series is scored as `predict` calls a study (the rule new checkpoints store), so that what cross-validation
# measures is what ships; a baseline run's predictions are re-scored by the same rule when compared.
SERIES_RULE = DEFAULT_RULE
LEVELS = ("image", "series")
STATISTIC_LABELS = {"roc_auc": "ROC-AUC", "sensitivity_at_specificity_90": "Sensitivity at specificity 0.90",
                    "specificity_at_sensitivity_90": "Specificity at sensitivity 0.90"}
PREDICTION_COLUMNS = ["path", "slice_index", "origin", "source", "group", "repeat", "fold", "label", "predicted"]


def _numbers(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def fold_metrics(labels, probs, classes, threshold, groups) -> dict:
    """Point metrics of one fold's test images, per image and per series (the study rule over its slices)."""
    image = point_metrics(labels, probs, classes, decide(probs, classes, threshold))
    _, series_labels, series_probs = aggregate_by_group(labels, probs, groups, SERIES_RULE, classes)
    series = point_metrics(series_labels, series_probs, classes, decide(series_probs, classes, threshold))
    return {"image": _numbers(image), "series": _numbers(series)}


def pooled_metrics(labels, probs, predicted, classes, groups, thresholds_by_group: dict) -> dict:
    """Every out-of-fold prediction of one repeat at once (thresholds are each fold's own)."""
    image = point_metrics(labels, probs, classes, predicted)
    ids, series_labels, series_probs = aggregate_by_group(labels, probs, groups, SERIES_RULE, classes)
    series_pred = np.array([decide(p[None], classes, thresholds_by_group[g])[0] for g, p in zip(ids, series_probs)])
    series = point_metrics(series_labels, series_probs, classes, series_pred)
    return {"image": _numbers(image), "series": _numbers(series)}


def summarise_folds(fold_rows: list[dict]) -> dict:
    """Mean and sample standard deviation (ddof=1) over folds (of every repeat) of every metric, per level;
    folds where a metric is undefined (e.g. ROC-AUC without both classes) are left out and counted in n."""
    summary = {}
    for level in LEVELS:
        summary[level] = {}
        for name, _ in METRICS:
            values = np.array([m[level].get(name, np.nan) for m in fold_rows], float)
            values = values[np.isfinite(values)]
            summary[level][name] = {
                "mean": float(values.mean()) if len(values) else float("nan"),
                "std": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
                "n": int(len(values)),
            }
    return summary


@dataclass(frozen=True)
class Evaluation:
    """A tumor-vs-negatives question asked of the out-of-fold predictions: which class folders count as
    negatives (None: every non-tumor folder)."""

    name: str
    negatives: tuple[str, ...] | None


def evaluations(origins: list[str]) -> list[Evaluation]:
    """Tumor vs Normal (the task every recipe is compared on) when both folders are there, and tumor vs
    every other folder when there are more."""
    present = {o.lower(): o for o in origins}
    if "tumor" not in present:
        return []
    others = sorted(o for key, o in present.items() if key != "tumor")
    found = []
    if "normal" in present:
        found.append(Evaluation("tumor_vs_normal", (present["normal"],)))
    if len(others) > 1 or "normal" not in present:
        found.append(Evaluation("tumor_vs_rest", None))
    return found


@dataclass
class OutOfFold:
    """Out-of-fold tumor scores of R repeats over the same images, with what the ranking needs."""

    keys: list[str]
    origins: list[str]
    series: list[str]
    tumor: np.ndarray  # float [R, N]: p(tumor) of each image in each repeat
    folds: np.ndarray  # int [R, N]
    sources: list[str] | None = None  # each image's source (None: runs written before sources existed)

    def units(self, evaluation: Evaluation, level: str) -> Units | None:
        is_tumor = np.array([o.lower() == "tumor" for o in self.origins])
        chosen = is_tumor | np.array([evaluation.negatives is None or o in evaluation.negatives for o in self.origins])
        index = np.flatnonzero(chosen)
        if level == "image":
            return Units.of(is_tumor[index].astype(int), self.tumor[:, index], np.array(self.series)[index])
        return group_units(is_tumor[index], self.tumor[:, index], np.array(self.series)[index], SERIES_RULE)


def ranking(oof: OutOfFold, n_boot: int, seed: int = 0) -> dict:
    """{evaluation: {level: {statistic: bootstrap_interval}}} plus the unit counts. With several repeats also
    '<evaluation> (ensemble of repeats)': each image scored by the mean of its R out-of-fold probabilities, an
    honest estimate of an R-model ensemble since none of the R models saw the image."""
    out = {}
    runs = [("", oof)]
    if len(oof.tumor) > 1:
        runs.append((" (ensemble of repeats)", OutOfFold(oof.keys, oof.origins, oof.series,
                                                        oof.tumor.mean(0, keepdims=True), oof.folds[:1], oof.sources)))
    for suffix, run in runs:
        out.update(_ranking_of(run, n_boot, seed, suffix))
    return out


def _ranking_of(oof: OutOfFold, n_boot: int, seed: int, suffix: str) -> dict:
    out = {}
    for evaluation in evaluations(oof.origins):
        name = evaluation.name + suffix
        out[name] = {}
        for level in LEVELS:
            units = oof.units(evaluation, level)
            entry = {stat: bootstrap_interval(units, statistic, n_boot, seed)
                     for stat, statistic in RANKING_STATISTICS.items()}
            entry["positives"], entry["negatives"] = int(units.y.sum()), int((1 - units.y).sum())
            out[name][level] = entry
    return out


def aligned(candidate: OutOfFold, baseline: OutOfFold) -> tuple[OutOfFold, OutOfFold]:
    """Both runs restricted to the images both tested and the repeats both ran; a ValueError unless
    those images sat in the same folds."""
    shared = sorted(set(candidate.keys) & set(baseline.keys))
    if not shared:
        raise ValueError("the two runs share no tested image")
    a, b = _restrict(candidate, shared), _restrict(baseline, shared)
    repeats = min(len(a.tumor), len(b.tumor))
    if not np.array_equal(a.folds[:repeats], b.folds[:repeats]):
        raise ValueError("the two runs did not test these images in the same folds: compare runs with the same "
                         "data, --folds, --fold-seed and --repeats")
    a.tumor, a.folds, b.tumor, b.folds = a.tumor[:repeats], a.folds[:repeats], b.tumor[:repeats], b.folds[:repeats]
    return a, b


def compare(candidate: OutOfFold, baseline: OutOfFold, n_boot: int, seed: int = 0) -> dict:
    """Paired comparison on the units both runs tested, on the same folds (else a ValueError)."""
    a, b = aligned(candidate, baseline)
    out = {"images": len(a.keys), "repeats": len(a.tumor)}
    for evaluation in evaluations(a.origins):
        out[evaluation.name] = {}
        for level in LEVELS:
            ua, ub = a.units(evaluation, level), b.units(evaluation, level)
            out[evaluation.name][level] = {name: paired_comparison(ua, ub, statistic, n_boot, seed)
                                           for name, statistic in RANKING_STATISTICS.items()}
    return out


def averaged(runs: list[OutOfFold]) -> OutOfFold:
    """An ensemble of cv runs (e.g. two recipes) on the same folds: each image's tumor score is the mean of the
    runs' out-of-fold scores, over the images and repeats all of them tested. Honest like the runs themselves:
    no model saw the images it scores. A ValueError unless the runs share images in the same folds."""
    first = runs[0]
    for other in runs[1:]:
        first, _ = aligned(first, other)  # restricted to the shared images, in one order
    parts = [aligned(first, run)[1] for run in runs[1:]]
    parts.insert(0, first)
    return OutOfFold(first.keys, first.origins, first.series, np.mean([p.tumor for p in parts], axis=0), first.folds,
                     first.sources)


def source_table(oof: OutOfFold, called: np.ndarray | None, group_sources: set[str], n_boot: int, seed: int = 0,
                 true_masks=None, predicted_masks=None, ranked: dict | None = None) -> dict:
    """The per-source table (evaluation.per_source) of the first question `evaluations` asks (tumor vs normal
    when a Normal folder takes part), or, with no tumor slice tested (a held-out source of normal slices),
    every slice as a negative: {"question", "rows": {source: row, ..., "pooled": row}}. The pooled intervals
    are taken from `ranked` (`ranking`'s result over the same predictions) when given."""
    found = evaluations(oof.origins)
    question = found[0] if found else Evaluation("no tumor slices: every slice a negative", None)
    is_tumor = np.array([o.lower() == "tumor" for o in oof.origins])
    negative = ~is_tumor & np.array([question.negatives is None or o in question.negatives for o in oof.origins])
    sources = oof.sources or ["all"] * len(oof.keys)
    scored = Scored(sources, oof.series, is_tumor, negative, oof.tumor, called, true_masks, predicted_masks)
    pooled = (ranked or {}).get(question.name)
    return {"question": question.name,
            "rows": per_source_table(scored, group_sources, n_boot, seed, SERIES_RULE, pooled)}


def _restrict(oof: OutOfFold, keys: list[str]) -> OutOfFold:
    where = {key: i for i, key in enumerate(oof.keys)}
    index = np.array([where[key] for key in keys])
    return OutOfFold(list(keys), [oof.origins[i] for i in index], [oof.series[i] for i in index],
                     oof.tumor[:, index].copy(), oof.folds[:, index],
                     None if oof.sources is None else [oof.sources[i] for i in index])


def write_predictions(path: Path, samples, classes, labels, folds, probs, predicted) -> None:
    """predictions.csv: one row per image and repeat (its out-of-fold prediction)."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(PREDICTION_COLUMNS + [f"p_{c}" for c in classes])
        for r in range(len(probs)):
            for i, s in enumerate(samples):
                writer.writerow([s.path, "" if s.slice_index is None else s.slice_index, s.origin or "", s.source or "",
                                 s.group, r,
                                 int(folds[r, i]), classes[labels[i]], classes[predicted[r, i]],
                                 *[f"{p:.6f}" for p in probs[r, i]]])


def read_out_of_fold(path: Path) -> OutOfFold:
    """The out-of-fold tumor scores in a predictions.csv written by `write_predictions`."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    tumor_column = next((c for c in rows[0] if c.startswith("p_") and c[2:].lower() == "tumor"), None) if rows else None
    if tumor_column is None or "repeat" not in rows[0]:
        raise ValueError(f"{path} holds no tumor probabilities of a kidneyct cv run of this version")
    keys = list(dict.fromkeys(f"{r['path']}#{r['slice_index']}" for r in rows))
    where = {key: i for i, key in enumerate(keys)}
    repeats = 1 + max(int(r["repeat"]) for r in rows)
    tumor, folds = np.zeros((repeats, len(keys))), np.zeros((repeats, len(keys)), int)
    origins, series, sources = [""] * len(keys), [""] * len(keys), [""] * len(keys)
    for r in rows:
        i, repeat = where[f"{r['path']}#{r['slice_index']}"], int(r["repeat"])
        tumor[repeat, i], folds[repeat, i] = float(r[tumor_column]), int(r["fold"])
        origins[i], series[i], sources[i] = r["origin"] or r["label"], r["group"], r.get("source") or ""
    return OutOfFold(keys, origins, series, tumor, folds, sources if any(sources) else None)


def out_of_fold(samples, classes, folds: np.ndarray, probs: np.ndarray) -> OutOfFold | None:
    pos = positive_index(classes)
    if pos is None:
        return None
    keys = [f"{s.path}#{'' if s.slice_index is None else s.slice_index}" for s in samples]
    origins = [s.origin or classes[s.label] for s in samples]
    return OutOfFold(keys, origins, [s.group for s in samples], probs[:, :, pos], folds, [s.source for s in samples])


def write_folds_csv(path: Path, folds: list[dict]) -> None:
    columns = ["repeat", "fold", "test_images", "test_series", "train_images", "val_images", "best_epoch", "seconds"]
    columns += [f"{level}_{name}" for level in LEVELS for name, _ in METRICS]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for fold in folds:
            writer.writerow([fold[c] for c in columns[:8]] +
                            [fold[level].get(name, "") for level in LEVELS for name, _ in METRICS])


def _interval(entry: dict) -> str:
    return f"{entry['value']:.3f} [{entry['ci_low']:.3f}, {entry['ci_high']:.3f}]"


def summary_lines(summary: dict, pooled: dict) -> list[str]:
    header = ["metric", "per image (mean ± sd over folds)", "per series (mean ± sd over folds)",
              "pooled out-of-fold, image", "pooled out-of-fold, series"]
    rows = [[label, tables.mean_sd_cell(summary["image"][name]), tables.mean_sd_cell(summary["series"][name]),
             *(f"{pooled[level][name]:.3f}" if name in pooled[level] else "n/a" for level in LEVELS)]
            for name, label in METRICS if any(summary[level][name]["n"] for level in LEVELS)]
    return tables.markdown_table(header, rows)


def ranking_lines(ranked: dict) -> list[str]:
    lines = []
    for evaluation, levels in ranked.items():
        counts = ", ".join(f"{lv}: {levels[lv]['positives']} tumor / {levels[lv]['negatives']} other" for lv in LEVELS)
        lines += [f"**{evaluation.replace('_', ' ')}** ({counts}); pooled out-of-fold, mean over repeats "
                  "[95% bootstrap interval over series]:", "",
                  "| statistic | per image | per series | per repeat (image / series) |", "|---|---|---|---|"]
        for name, label in STATISTIC_LABELS.items():
            per_repeat = " / ".join(", ".join(f"{v:.3f}" for v in levels[lv][name]["repeats"]) for lv in LEVELS)
            lines.append(f"| {label} | {_interval(levels['image'][name])} | {_interval(levels['series'][name])} "
                         f"| {per_repeat} |")
        lines.append("")
    return lines


def comparison_lines(compared: dict, baseline_name: str) -> list[str]:
    lines = [f"## Paired comparison with {baseline_name}", "",
             f"Same {compared['images']} images, same folds, {compared['repeats']} repeat(s); the difference "
             "(this run minus the baseline) with a 95% bootstrap interval over series shared by both runs, and the "
             "share of resamples in which this run is ahead.", ""]
    for evaluation in (k for k in compared if k not in ("images", "repeats")):
        lines += [f"**{evaluation.replace('_', ' ')}**", "", "| statistic | level | this run | baseline | "
                  "difference [95% CI] | ahead in |", "|---|---|---|---|---|---|"]
        for level in LEVELS:
            for name, label in STATISTIC_LABELS.items():
                e = compared[evaluation][level][name]
                lines.append(f"| {label} | {level} | {e['candidate']:.3f} | {e['baseline']:.3f} | {e['delta']:+.3f} "
                             f"[{e['ci_low']:+.3f}, {e['ci_high']:+.3f}] | {e['p_better']:.0%} |")
        lines.append("")
    return lines


def fold_lines(folds: list[dict]) -> list[str]:
    header = ["repeat", "fold", "test images", "test series", "train", "val", "best epoch", "seconds"]
    header += [f"{label} ({level})" for level in LEVELS for name, label in METRICS]
    rows = [[fold[c] for c in ("repeat", "fold", "test_images", "test_series", "train_images", "val_images",
                               "best_epoch")] + [f"{fold['seconds']:.0f}"]
            + [f"{fold[level][name]:.3f}" if name in fold[level] else "n/a" for level in LEVELS for name, _ in METRICS]
            for fold in folds]
    return tables.markdown_table(header, rows)


def markdown(title: str, setup: str, summary: dict, pooled: dict, ranked: dict, compared: dict | None,
             baseline_name: str | None, folds: list[dict], sources: dict | None = None) -> str:
    lines = [f"# {title}", "", f"> {DISCLAIMER}", "", setup, ""]
    if sources:
        lines += ["## Per source (pooled out of fold)", ""]
        lines += table_lines(sources["rows"], sources["question"].replace("_", " ")) + [""]
    if ranked:
        lines += ["## Ranking (what recipes are chosen by)", ""] + ranking_lines(ranked)
    if compared:
        lines += comparison_lines(compared, baseline_name)
    lines += ["## Decisions at each fold's operating point (repeat 0 pooled)", ""] + summary_lines(summary, pooled)
    lines += ["", "## Per fold", ""] + fold_lines(folds)
    return "\n".join(lines) + "\n"
