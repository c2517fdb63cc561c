"""The patient (group) of every decoded sample, source by source: series inferred from the pixels for
`series` sources (each source on its own, so no near-duplicate link ever joins two sources), the file's
patient for `file` and `pattern` sources (already named by the catalogue). With several sources every id
carries its source's name."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from kidneyct.data.catalogue import Sample
from kidneyct.data.groups import Grouping, infer_groups, summarise
from kidneyct.data.sources import Source, qualified


def assign_groups(samples: list[Sample], sources: list[Source],
                  series_view: Callable[[list[int]], np.ndarray]) -> Grouping:
    """Group ids per sample and what inferring them found.

    Args:
        samples: the decoded samples, each with its `source` (and, for file/pattern sources, its group).
        sources: the run's sources.
        series_view: rows of the series view (groups.series_view) of the samples at the given positions.

    Returns:
        A Grouping over all samples; its summary has a "per_source" entry with several sources.
    """
    several = len(sources) > 1
    groups: list[str | None] = [None] * len(samples)
    merged = Grouping(groups, [], 0, 0, [])
    per_source = {}
    for source in sources:
        index = [i for i, s in enumerate(samples) if s.source == source.name]
        if not index:
            continue
        part = [samples[i] for i in index]
        if source.grouping == "series":
            found = infer_groups(part, series_view(index))
            if not several:
                return found  # one series source: exactly the single-folder run of before sources existed
            ids = [qualified(source.name, g, True) for g in found.groups]
        else:
            ids = [s.group for s in part]
            found = Grouping(ids, [], 0, 0, [])
            found.summary = summarise(found, part)
        _add(merged, found, index, ids)
        per_source[source.name] = {"grouping": source.grouping, **found.summary}
    merged.summary = summarise(merged, samples)
    if several:
        merged.summary["per_source"] = per_source
    return merged


def _add(merged: Grouping, part: Grouping, index: list[int], ids: list[str]) -> None:
    """Fold one source's grouping (positions `index` of the whole sample list) into `merged`."""
    for position, group in zip(index, ids):
        merged.groups[position] = group
    merged.exact_duplicates += [(index[a], index[b]) for a, b in part.exact_duplicates]
    merged.near_duplicates += part.near_duplicates
    merged.neighbour_links += part.neighbour_links
    merged.label_conflicts += [(index[a], index[b], s) for a, b, s in part.label_conflicts]
