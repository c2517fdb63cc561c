"""Self-contained HTML and Markdown reports from an evaluation's metrics.json content."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from kidneyct.about import DISCLAIMER
from kidneyct.evaluation.tables import SUMMARY_METRICS, interval_cell, markdown_table, value_and_interval


def _plural(unit: str) -> str:
    return unit if unit.endswith("s") else unit + "s"  # series is its own plural


def summary_rows(metrics: dict) -> list[tuple[str, str, str]]:
    return [(label, *value_and_interval(metrics[key])) for key, label in SUMMARY_METRICS if key in metrics]


def class_rows(metrics: dict, classes: list[str]) -> list[tuple[str, ...]]:
    return [(name, *(interval_cell(metrics[f"{m}_{name.lower()}"]) for m in ("precision", "recall", "f1")))
            for name in classes]


def data_lines(result: dict) -> list[str]:
    data = result["data"]
    lines = []
    if data.get("synthetic"):
        lines.append("SYNTHETIC DATA: these images are generated phantoms, not patients; "
                     "the numbers say nothing about performance on real CT.")
    lines += [
        f"Dataset: {data['root']}",
        f"Classes: {', '.join(result['classes'])}",
        f"Split: {data['split_description']}",
        "Split sizes (images): " + ", ".join(f"{k} {v}" for k, v in data.get("split_sizes", {}).items()),
        f"Evaluated split: {result['split']} ({result['metrics']['n']} images)",
        f"Confidence intervals: {result['metrics']['bootstrap']['level']:.0%} percentile bootstrap over "
        f"{result['metrics']['bootstrap']['n_boot']} resamples of {_plural(result['metrics']['bootstrap']['unit'])}",
    ]
    return lines


def model_lines(result: dict) -> list[str]:
    m = result["model"]
    return [
        f"Model: {m['name']} ({m['image_size']} px, pretrained: {m['pretrained']}, "
        f"backbone frozen: {m['freeze_backbone']})",
        f"Checkpoint: {result['checkpoint']} (epoch {result.get('epoch')})",
    ]


STYLE = ("body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px}"
         ".warn{background:#fff3cd;border:1px solid #e0c36a;padding:10px}"
         ".synthetic{background:#e8f0fe;border:1px solid #7aa1e8;padding:10px;font-weight:bold}"
         "img{max-width:100%;margin:6px 0}")


def html_page(title: str, parts: list[str]) -> str:
    """A self-contained HTML page: the report style, `title` and the body `parts` (HTML) in order."""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>" + "".join(parts) + "</body></html>")


def table_html(header, rows) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def image_html(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def write_reports(result: dict, figures: dict[str, Path], out: Path) -> tuple[Path, Path]:
    metrics = result["metrics"]
    summary = summary_rows(metrics)
    per_class = class_rows(metrics, result["classes"])
    skipped = result["data"].get("skipped", [])
    extra_sections = result.get("sections", [])  # (title, markdown-free text lines) the job adds

    md = ["# kidneyct evaluation report", "", f"> {DISCLAIMER}", ""]
    md += [f"- {line}" for line in data_lines(result) + model_lines(result)] + [""]
    md += ["## Metrics", "", *markdown_table(["metric", "value", "95% CI"], summary), ""]
    md += ["## Per class", "", *markdown_table(["class", "precision (CI)", "recall (CI)", "F1 (CI)"], per_class), ""]
    for title, lines in extra_sections:
        md += [f"## {title}", "", *lines, ""]
    for name, path in figures.items():
        md += [f"![{name}]({path.name})", ""]
    md += ["## Skipped files", ""] + ([f"- {p}: {r}" for p, r in skipped] or ["None."]) + [""]
    markdown_path = out / "report.md"
    markdown_path.write_text("\n".join(md))

    synthetic = result["data"].get("synthetic")
    parts = ["<h1>kidneyct evaluation report</h1>", f"<p class='warn'>{html.escape(DISCLAIMER)}</p>"]
    if synthetic:
        parts.append("<p class='synthetic'>SYNTHETIC DATA: generated phantoms, not patients.</p>")
    parts.append("<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in data_lines(result) + model_lines(result))
                 + "</ul>")
    parts += ["<h2>Metrics</h2>", table_html(["metric", "value", "95% CI"], summary)]
    parts += ["<h2>Per class</h2>", table_html(["class", "precision (CI)", "recall (CI)", "F1 (CI)"], per_class)]
    for title, lines in extra_sections:
        parts += [f"<h2>{html.escape(title)}</h2>", "<pre>" + html.escape("\n".join(lines)) + "</pre>"]
    parts += ["<h2>Figures</h2>"] + [image_html(path) for path in figures.values()]
    parts += ["<h2>Skipped files</h2>", "<ul>" + ("".join(f"<li>{html.escape(p)}: {html.escape(r)}</li>"
                                                          for p, r in skipped) or "<li>None.</li>") + "</ul>"]
    html_path = out / "report.html"
    html_path.write_text(html_page("kidneyct report", parts))
    return html_path, markdown_path
