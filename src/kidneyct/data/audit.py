"""Leakage audit: how close is every evaluated image to its nearest training image?

Uses the same thumbnail correlation as series inference (kidneyct.data.groups), so "near-duplicate"
means the same thing in grouping and in the audit: a grouped split leaves none across sides by
construction, a random split on CT slices leaves many.
"""

from __future__ import annotations

import numpy as np

from kidneyct.data.catalogue import Sample
from kidneyct.data.groups import NEAR_DUPLICATE, nearest, thumbnails


def leakage_audit(train_images: np.ndarray, train_samples: list[Sample], query_images: np.ndarray,
                  query_samples: list[Sample], threshold: float = NEAR_DUPLICATE, worst: int = 10) -> dict:
    index, similarity = nearest(thumbnails(query_images), thumbnails(train_images))
    distance = 1.0 - similarity
    leaked = similarity >= threshold
    order = np.argsort(-similarity)[:worst]
    return {
        "measure": "1 - Pearson correlation of 32x32 thumbnails to the nearest training image",
        "threshold": threshold,
        "n_query": int(len(query_samples)), "n_train": int(len(train_samples)),
        "near_duplicates": int(leaked.sum()),
        "near_duplicate_share": float(leaked.mean()) if len(leaked) else 0.0,
        "distance_percentiles": {str(p): float(np.percentile(distance, p)) for p in (1, 5, 25, 50, 75)}
        if len(distance) else {},
        "closest_pairs": [
            {"query": query_samples[i].key, "train": train_samples[index[i]].key, "similarity": float(similarity[i])}
            for i in order
        ],
    }


def audit_lines(audit: dict) -> list[str]:
    lines = [
        f"Measure: {audit['measure']}; near-duplicate when correlation >= {audit['threshold']}.",
        f"{audit['near_duplicates']} of {audit['n_query']} evaluated images "
        f"({audit['near_duplicate_share']:.1%}) have a near-duplicate among {audit['n_train']} training images.",
        "Distance to nearest training image, percentiles: "
        + ", ".join(f"p{p} {v:.4f}" for p, v in audit["distance_percentiles"].items()),
    ]
    if audit["near_duplicates"]:
        lines.append("Closest pairs (evaluated image ~ training image, correlation):")
        lines += [f"  {pair['query']} ~ {pair['train']} ({pair['similarity']:.4f})" for pair in audit["closest_pairs"]]
    return lines
