"""The study report (`kidneyct predict ... --report DIR`): one HTML page per series or volume with the call and
its probability, the in-scope slice range, the slices that drove the call as key images with Grad-CAM
heatmaps, the probability of every slice, the warnings, how the model was validated and the
not-a-medical-device note; an index page lists the studies and the single slices."""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np

from kidneyct.about import DISCLAIMER
from kidneyct.evaluation.report import html_page, table_html
from kidneyct.inference.results import SliceResult, StudyResult
from kidneyct.inference.overlay import write_overlay
from kidneyct.inference.model_facts import validation_lines
from kidneyct.io import file_kind, read_slices
from kidneyct.labels import positive_index

KEY_IMAGES = 4  # the highest-probability driving slices shown as key images


def _escape_list(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>" if items else "<p>None.</p>"


def _slug(name: str, used: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9]+", "-", Path(name.split(" [")[0]).name).strip("-")[:60] or "study"
    slug, number = stem, 2
    while slug in used:
        slug, number = f"{stem}-{number}", number + 1
    used.add(slug)
    return slug


def _reload(row: SliceResult):
    """The slice a result row came from, read again (reports need only a few of them)."""
    if file_kind(row.source) == "nifti" and row.index is not None:
        return read_slices(row.source, [row.index])[0]
    return read_slices(row.source)[0]


def _key_images(study: StudyResult, folder: Path, predictor, explainer, tumor: str) -> list[str]:
    """Key-image PNGs (relative to the report folder) of the highest-probability driving slices, with the
    Grad-CAM heatmap of the tumor class when an explainer is given."""
    by_index = {r.index: r for r in study.slices}
    chosen = sorted(study.driving_slices, key=lambda i: -by_index[i].probabilities[tumor])[:KEY_IMAGES]
    names = []
    for index in sorted(chosen):
        row = by_index[index]
        image = predictor.preprocessing.to_uint8(_reload(row))
        heatmap = (explainer.heatmaps(image[None], [predictor.classes.index(tumor)])[0] if explainer is not None
                   else np.zeros(image.shape, np.float32))
        path = folder / f"slice-{index:04d}.png"
        write_overlay(image, heatmap, f"slice {index}: {tumor}", row.probabilities[tumor], path, row.source)
        names.append(f"{folder.name}/{path.name}")
    return names


def _probability_plot(study: StudyResult, tumor: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # imported here: only reports draw

    rows = study.slices
    index = np.array([r.index for r in rows])
    probs = np.array([r.probabilities[tumor] for r in rows])
    fig, ax = plt.subplots(figsize=(8, 2.6))
    for r in rows:
        if r.in_scope:
            ax.axvspan(r.index - 0.5, r.index + 0.5, color="#d9ead3", lw=0)
    ax.plot(index, probs, "-o", ms=3, color="#2f6fde", label="slice p(tumor)")
    ax.axhline(study.threshold, color="#c0392b", ls="--", lw=1, label=f"threshold {study.threshold:g}")
    driving = [r for r in rows if r.index in set(study.driving_slices)]
    ax.plot([r.index for r in driving], [r.probabilities[tumor] for r in driving], "s", ms=6, mfc="none",
            color="#c0392b", label="driving slices")
    ax.set(xlabel="slice (green: in scope)", ylabel="p(tumor)", ylim=(0, 1))
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _call_text(study: StudyResult) -> str:
    if study.tumor_probability is None:
        return "No call: " + study.rule
    answer = "TUMOR" if study.tumor else "no tumor"
    return f"{answer} (study tumor probability {study.tumor_probability:.3f}, threshold {study.threshold:g})"


def _span_text(study: StudyResult) -> str:
    if not study.in_scope_slices:
        return f"none of the {study.n_slices} slices"
    return (f"{len(study.in_scope_slices)} of {study.n_slices} slices, {min(study.in_scope_slices)} to "
            f"{max(study.in_scope_slices)}")


def _study_page(study: StudyResult, folder: Path, predictor, explainer, tumor: str, model_lines: list[str]) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    images = _key_images(study, folder, predictor, explainer, tumor)
    plot = _probability_plot(study, tumor, folder / "probabilities.png")
    table = table_html(["slice", "p(tumor)", "in scope", "why"],
                       [(r.index, f"{r.probabilities[tumor]:.3f}", "yes" if r.in_scope else "no", r.scope_reason)
                        for r in study.slices])
    parts = [f"<h1>{html.escape(study.input)}</h1>", f"<p class='warn'>{html.escape(DISCLAIMER)}</p>",
             f"<h2>Call: {html.escape(_call_text(study))}</h2>",
             f"<p>Rule: {html.escape(study.rule)}. In scope: {html.escape(_span_text(study))}.</p>",
             "<h2>Warnings</h2>", _escape_list(study.warnings), "<h2>Key images</h2>"]
    shown = "" if explainer is None else " (the model's tumor map, not a diagnosis)" if hasattr(explainer, "label") \
        else " (Grad-CAM of the tumor class, not a diagnosis)"
    parts += ([f"<p>The slices the call rests on{shown}:</p>"] + [f"<img alt='{html.escape(n)}' src='{html.escape(n)}'>" for n in images]
              if images else ["<p>None: no slice drove a call.</p>"])
    parts += ["<h2>Every slice</h2>", f"<img alt='slice probabilities' src='{folder.name}/{plot.name}'>",
              f"<details><summary>table of {study.n_slices} slices</summary>{table}</details>",
              "<h2>How the model was validated</h2>", _escape_list(model_lines)]
    return html_page(f"kidneyct study {Path(study.input).name}", parts)


def write_study_report(results: list[StudyResult], out: str | Path, predictor, explainer=None) -> Path:
    """One page per study and `index.html` under `out`.

    Args:
        results: the StudyResults to report (kidneyct.inference.run).
        out: the report folder.
        predictor: the Predictor that made them (its preprocessing, classes and checkpoint).
        explainer: a GradCamExplainer for heatmaps on the key images (None: plain key images).

    Returns:
        The index page.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pos = positive_index(predictor.classes)
    if pos is None:
        raise ValueError(f"a study report needs a tumor class; classes are {predictor.classes}")
    tumor, used, links = predictor.classes[pos], set(), []
    model_lines = validation_lines(predictor.checkpoint, predictor.backend.source)
    for study in (r for r in results if r.is_study):
        slug = _slug(study.input, used)
        (out / f"{slug}.html").write_text(_study_page(study, out / slug, predictor, explainer, tumor, model_lines))
        links.append((study, slug))
    index = out / "index.html"
    index.write_text(_index_page(results, links, tumor, model_lines))
    return index


def _index_page(results: list[StudyResult], links, tumor: str, model_lines: list[str]) -> str:
    studies = "".join(
        f"<tr><td><a href='{slug}.html'>{html.escape(s.input)}</a></td><td>{s.kind}</td><td>{s.n_slices}</td>"
        f"<td>{html.escape(_span_text(s))}</td><td>{html.escape(_call_text(s))}</td><td>{len(s.warnings)}</td></tr>"
        for s, slug in links)
    singles = [(r.source, f"{r.probabilities[tumor]:.3f}", r.call or "no call", "yes" if r.in_scope else "no",
                r.scope_reason, " | ".join(r.warnings))
               for result in results if not result.is_study for r in result.slices]
    parts = ["<h1>kidneyct study report</h1>", f"<p class='warn'>{html.escape(DISCLAIMER)}</p>",
             "<h2>Studies</h2>",
             "<table><thead><tr><th>study</th><th>kind</th><th>slices</th><th>in scope</th><th>call</th>"
             f"<th>warnings</th></tr></thead><tbody>{studies}</tbody></table>" if links else "<p>None.</p>"]
    if singles:
        parts += ["<h2>Single slices</h2>",
                  table_html(["file", "p(tumor)", "call", "in scope", "why", "warnings"], singles)]
    parts += ["<h2>Skipped</h2>", _escape_list([f"{p}: {r}" for result in results for p, r in result.skipped]),
              "<h2>How the model was validated</h2>", _escape_list(model_lines)]
    return html_page("kidneyct study report", parts)
