"""The study report (`kidneyct predict ... --report DIR`): one HTML page per series or volume with the call and
its probability, the in-scope slice range, the slices that drove the call as key images with Grad-CAM
heatmaps, the probability of every slice, the warnings, how the model was validated and the
not-a-medical-device note; an index page lists the studies and the single slices."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np

from kidneyct.about import DISCLAIMER
from kidneyct.evaluation.report import html_page, table_html
from kidneyct.inference.batch import BatchPrediction, SliceResult, StudyResult
from kidneyct.inference.explain import write_overlay
from kidneyct.io import file_kind, read_slices
from kidneyct.labels import positive_index

KEY_IMAGES = 4  # the highest-probability driving slices shown as key images


def _escape_list(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>" if items else "<p>None.</p>"


def validation_lines(payload: dict, checkpoint: str | Path) -> list[str]:
    """How the model was trained and validated, from its checkpoint (and `kidneyct evaluate`'s metrics.json
    beside it when there is one)."""
    data = payload.get("data") or {}
    sizes = data.get("split_sizes") or {}
    lines = [f"Model: {(payload.get('model_config') or {}).get('name')} from {Path(checkpoint).name}, trained on "
             f"{Path(str(data.get('root', ''))).name or 'an unnamed folder'} "
             f"({'SYNTHETIC phantoms' if data.get('synthetic') else 'real CT slices'}), "
             f"{data.get('split_kind', 'unknown')} split, slices train/val/test "
             f"{sizes.get('train')}/{sizes.get('val')}/{sizes.get('test')}."]
    best = next((row for row in payload.get("history") or [] if row.get("epoch") == payload.get("best_epoch")), None)
    if best:
        lines.append(f"Validation at the kept epoch {best['epoch']}: accuracy {best.get('val_accuracy', float('nan')):.3f}, "
                     f"macro-F1 {best.get('val_macro_f1', float('nan')):.3f} (per slice).")
    point = payload.get("operating_point")
    if point:
        lines.append(f"Operating point: {point['method']}; on validation sensitivity {point['val_sensitivity']:.3f}, "
                     f"specificity {point['val_specificity']:.3f}.")
    report = Path(checkpoint).parent / "report" / "metrics.json"
    if report.is_file():
        metrics = json.loads(report.read_text()).get("series_metrics") or {}
        auc = (metrics.get("roc_auc_tumor") or {}).get("value")
        if auc is not None:
            lines.append(f"Held-out test split, per series: ROC-AUC {auc:.3f} (kidneyct evaluate).")
    lines.append("Grouped cross-validation of the default recipe on the Kaggle slices: see the README; the "
                 "model has not been validated on whole series, non-contrast scans or other hospitals' data.")
    return lines


def _slug(name: str, used: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9]+", "-", Path(name.split(" [")[0]).name).strip("-")[:60] or "study"
    slug, number = stem, 2
    while slug in used:
        slug, number = f"{stem}-{number}", number + 1
    used.add(slug)
    return slug


def _reload(row: SliceResult):
    """The slice a result row came from, read again (reports need only a few of them)."""
    if file_kind(row.source) == "nifti" and row.slice_index is not None:
        return read_slices(row.source, [row.slice_index])[0]
    return read_slices(row.source)[0]


def _key_images(study: StudyResult, rows: list[SliceResult], folder: Path, backend, explainer, tumor: str) -> list[str]:
    """Key-image PNGs (relative to the report folder) of the highest-probability driving slices, with the
    Grad-CAM heatmap of the tumor class when an explainer is given."""
    by_index = {r.slice_index: r for r in rows}
    chosen = sorted(study.driving_slices, key=lambda i: -by_index[i].probabilities[tumor])[:KEY_IMAGES]
    names = []
    for index in sorted(chosen):
        row = by_index[index]
        image = backend.preprocessing.to_uint8(_reload(row))
        heatmap = (explainer.heatmaps(image[None], [backend.classes.index(tumor)])[0] if explainer is not None
                   else np.zeros(image.shape, np.float32))
        path = folder / f"slice-{index:04d}.png"
        write_overlay(image, heatmap, f"slice {index}: {tumor}", row.probabilities[tumor], path, row.source)
        names.append(f"{folder.name}/{path.name}")
    return names


def _probability_plot(study: StudyResult, rows: list[SliceResult], tumor: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # imported here: only reports draw

    index = np.array([r.slice_index for r in rows])
    probs = np.array([r.probabilities[tumor] for r in rows])
    fig, ax = plt.subplots(figsize=(8, 2.6))
    for r in rows:
        if r.in_scope:
            ax.axvspan(r.slice_index - 0.5, r.slice_index + 0.5, color="#d9ead3", lw=0)
    ax.plot(index, probs, "-o", ms=3, color="#2f6fde", label="slice p(tumor)")
    ax.axhline(study.threshold, color="#c0392b", ls="--", lw=1, label=f"threshold {study.threshold:g}")
    driving = [r for r in rows if r.slice_index in set(study.driving_slices)]
    ax.plot([r.slice_index for r in driving], [r.probabilities[tumor] for r in driving], "s", ms=6, mfc="none",
            color="#c0392b", label="driving slices")
    ax.set(xlabel="slice (green: in scope)", ylabel="p(tumor)", ylim=(0, 1))
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _call_text(study: StudyResult) -> str:
    if study.tumor_probability is None:
        return "No call: " + study.aggregation
    answer = "TUMOR" if study.tumor else "no tumor"
    return f"{answer} (study tumor probability {study.tumor_probability:.3f}, threshold {study.threshold:g})"


def _span_text(study: StudyResult) -> str:
    if not study.in_scope_slices:
        return f"none of the {study.n_slices} slices"
    return (f"{len(study.in_scope_slices)} of {study.n_slices} slices, {min(study.in_scope_slices)} to "
            f"{max(study.in_scope_slices)}")


def _study_page(study: StudyResult, rows: list[SliceResult], folder: Path, backend, explainer, tumor: str,
                model_lines: list[str]) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    images = _key_images(study, rows, folder, backend, explainer, tumor)
    plot = _probability_plot(study, rows, tumor, folder / "probabilities.png")
    table = table_html(["slice", "p(tumor)", "in scope", "why"],
                       [(r.slice_index, f"{r.probabilities[tumor]:.3f}", "yes" if r.in_scope else "no", r.scope_reason)
                        for r in rows])
    parts = [f"<h1>{html.escape(study.input)}</h1>", f"<p class='warn'>{html.escape(DISCLAIMER)}</p>",
             f"<h2>Call: {html.escape(_call_text(study))}</h2>",
             f"<p>Rule: {html.escape(study.aggregation)}. In scope: {html.escape(_span_text(study))}.</p>",
             "<h2>Warnings</h2>", _escape_list(study.warnings), "<h2>Key images</h2>"]
    parts += ([f"<p>The slices the call rests on{' (Grad-CAM of the tumor class, not a diagnosis)' if explainer else ''}:"
               "</p>"] + [f"<img alt='{html.escape(n)}' src='{html.escape(n)}'>" for n in images]
              if images else ["<p>None: no slice drove a call.</p>"])
    parts += ["<h2>Every slice</h2>", f"<img alt='slice probabilities' src='{folder.name}/{plot.name}'>",
              f"<details><summary>table of {len(rows)} slices</summary>{table}</details>",
              "<h2>How the model was validated</h2>", _escape_list(model_lines)]
    return html_page(f"kidneyct study {Path(study.input).name}", parts)


def write_study_report(result: BatchPrediction, out: str | Path, backend, checkpoint: str | Path,
                       explainer=None) -> Path:
    """One page per study and `index.html` under `out`.

    Args:
        result: the batch prediction (predict_inputs) to report.
        out: the report folder.
        backend: the backend that predicted (its preprocessing, classes and stored checkpoint entries).
        checkpoint: the checkpoint file, named in the report.
        explainer: a GradCamExplainer for heatmaps on the key images (None: plain key images).

    Returns:
        The index page.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pos = positive_index(backend.classes)
    if pos is None:
        raise ValueError(f"a study report needs a tumor class; classes are {backend.classes}")
    tumor, used, links = backend.classes[pos], set(), []
    model_lines = validation_lines(backend.stored, checkpoint)
    for study in result.studies:
        rows = [r for r in result.slices if r.input == study.input]
        slug = _slug(study.input, used)
        (out / f"{slug}.html").write_text(_study_page(study, rows, out / slug, backend, explainer, tumor, model_lines))
        links.append((study, slug))
    index = out / "index.html"
    index.write_text(_index_page(result, links, tumor, model_lines))
    return index


def _index_page(result: BatchPrediction, links, tumor: str, model_lines: list[str]) -> str:
    studies = "".join(
        f"<tr><td><a href='{slug}.html'>{html.escape(s.input)}</a></td><td>{s.kind}</td><td>{s.n_slices}</td>"
        f"<td>{html.escape(_span_text(s))}</td><td>{html.escape(_call_text(s))}</td><td>{len(s.warnings)}</td></tr>"
        for s, slug in links)
    singles = [(r.source, f"{r.probabilities[tumor]:.3f}", r.predicted, "yes" if r.in_scope else "no",
                r.scope_reason, " | ".join(r.warnings))
               for r in result.slices if r.input not in {s.input for s, _ in links}]
    parts = ["<h1>kidneyct study report</h1>", f"<p class='warn'>{html.escape(DISCLAIMER)}</p>",
             "<h2>Studies</h2>",
             "<table><thead><tr><th>study</th><th>kind</th><th>slices</th><th>in scope</th><th>call</th>"
             f"<th>warnings</th></tr></thead><tbody>{studies}</tbody></table>" if links else "<p>None.</p>"]
    if singles:
        parts += ["<h2>Single slices</h2>",
                  table_html(["file", "p(tumor)", "model's class", "in scope", "why", "warnings"], singles)]
    parts += ["<h2>Skipped</h2>", _escape_list([f"{p}: {r}" for p, r in result.skipped]),
              "<h2>How the model was validated</h2>", _escape_list(model_lines)]
    return html_page("kidneyct study report", parts)
