"""StudyResults written as files or lines: JSON (everything in one file), CSV (one row per slice; the studies and
the skipped files in sidecars) or JSON lines. Formatting only: the results come from kidneyct.inference.run."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

from kidneyct.inference.results import ModelSummary, StudyResult
from kidneyct.io.atomic import atomic_write

OUT_SUFFIXES = (".csv", ".json")


def write_results(results: list[StudyResult], out: str | Path, model: ModelSummary) -> list[Path]:
    """JSON (the model and every result in one file) or CSV (slices; studies and skipped files in sidecars)."""
    out = Path(out)
    if out.suffix.lower() == ".json":
        document = {**model.to_dict(), "studies": [r.to_dict() for r in results]}
        # ensure_ascii: a file name that is no valid UTF-8 (a lone surrogate in Python) is escaped
        atomic_write(out, lambda stream: stream.write(json.dumps(document, indent=2).encode("ascii")))
        return [out]
    if out.suffix.lower() != ".csv":
        raise ValueError(f"--out must end in {' or '.join(OUT_SUFFIXES)}, got {out.name}")
    written = [_write_csv(out, *_slice_table(results, model.classes))]
    studies = [r for r in results if r.is_study]
    if studies:
        written.append(_write_csv(out.with_suffix(".studies.csv"), *_study_table(studies)))
    skipped = [(r.input, path, reason) for r in results for path, reason in r.skipped]
    if skipped:
        written.append(_write_csv(out.with_suffix(".skipped.csv"), ["input", "path", "reason"], skipped))
    return written


def json_lines(results: list[StudyResult]) -> Iterator[str]:
    """A line per slice, then a line per study (the results on a terminal, or piped into another tool)."""
    for result in results:
        for row in result.slices:
            yield json.dumps({"input": result.input, **row.to_dict()})
    for study in results:
        if study.is_study:
            yield json.dumps({key: value for key, value in study.to_dict().items() if key != "slices"})


def _flag(value: bool | None) -> str:
    return "" if value is None else str(int(value))


def _numbers(values: list[int]) -> str:
    return " ".join(map(str, values))


def _slice_table(results: list[StudyResult], classes: list[str]) -> tuple[list[str], list[list]]:
    header = ["input", "source", "slice_index", "call", *[f"p_{c}" for c in classes], "heatmap", "in_scope",
              "scope_reason", "warnings", *AREA_COLUMNS]
    rows = [[r.input, s.source, "" if s.index is None else s.index, s.call or "",
             *[f"{s.probabilities[c]:.6f}" for c in classes], s.heatmap or "", _flag(s.in_scope), s.scope_reason,
             " | ".join(s.warnings), *_areas(s.areas)] for r in results for s in r.slices]
    return header, rows


# A segmenting model's areas per slice (kidneyct.inference.segmented.areas); empty for classifiers, slices out of
# scope and mm^2 without a pixel spacing.
AREA_COLUMNS = ["kidney_px", "tumor_px", "kidney_mm2", "tumor_mm2"]


def _areas(areas: dict | None) -> list:
    return ["" if areas is None or areas.get(name) is None else areas[name] for name in AREA_COLUMNS]


def _study_table(studies: list[StudyResult]) -> tuple[list[str], list[list]]:
    header = ["input", "kind", "n_slices", "tumor_probability", "tumor", "threshold", "driving_slices",
              "positive_slices", "rule", "in_scope_slices", "warnings"]
    rows = [[s.input, s.kind, s.n_slices, "" if s.tumor_probability is None else f"{s.tumor_probability:.6f}",
             _flag(s.tumor), "" if s.threshold is None else s.threshold, _numbers(s.driving_slices),
             _numbers(s.positive_slices), s.rule, _numbers(s.in_scope_slices), " | ".join(s.warnings)]
            for s in studies]
    return header, rows


def _write_csv(path: Path, header: list[str], rows) -> Path:
    """Written atomically (a killed run leaves the old file or none); file names that are no valid UTF-8
    (undecodable bytes, kept by Python as lone surrogates) are written as backslash escapes."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write(path, lambda stream: stream.write(text.getvalue().encode("utf-8", "backslashreplace")))
    return path
