"""A segmenting model's two looks at a slice: the overview of the whole body view finds the kidneys; the zoom on
the square around them gives the slice logits and the lesion maps. Shared by training (validation, the boxes of
slices without masks) and inference, and by both backends: `run` is a PyTorch model or an ONNX session behind
one call, and the geometry is numpy (`kidneyct.preprocess.zoom`), so predicting needs no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kidneyct.preprocess.zoom import FULL_VIEW, Zoom, cut, paste

# (crops [B, 1, S, S] float32 in [0, 1]) -> (slice logits [B, K], map logits [B, 2, S, S]), both numpy
Runner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class Looks:
    """What the two looks found, per slice.

    Attributes:
        logits: slice logits [N, K] of the zoomed look.
        kidney_fraction: share of the body view the overview calls kidney [N] (the scope gate reads it).
        boxes: the zoom boxes [N, 3] (centre x, centre y, half side; normalised view coordinates).
        found: whether the overview found a kidney [N] (False: the box is the zoom's prior).
        tumor_peak: the highest tumor probability inside the zoom's (slightly grown) kidney map [N].
        maps: kidney and tumor probabilities [N, 2, V, V] on the body view's grid, or None when not asked for.
    """

    logits: np.ndarray
    kidney_fraction: np.ndarray
    boxes: np.ndarray
    found: np.ndarray
    tumor_peak: np.ndarray
    maps: np.ndarray | None = None


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def _crops(views: np.ndarray, boxes, size: int) -> np.ndarray:
    unit = views.astype(np.float32) / 255.0
    return np.stack([cut(view, box, size) for view, box in zip(unit, boxes)])[:, None]


def tumor_peak(maps: np.ndarray, grow: int = 4) -> np.ndarray:
    """Per slice: the highest tumor probability within `grow` pixels of the kidney map (a tumor may bulge out
    of the kidney), from probability maps [N, 2, S, S]; 0 where no kidney is seen."""
    from scipy import ndimage

    peaks = []
    for kidney, tumor in maps:
        near = ndimage.maximum_filter(kidney, size=2 * grow + 1) > 0.5
        peaks.append(float(tumor[near].max()) if near.any() else 0.0)
    return np.asarray(peaks, np.float32)


def look_twice(run: Runner, views: np.ndarray, zoom: Zoom, size: int, with_maps: bool = False,
               batch_size: int = 32) -> Looks:
    """Both looks at uint8 body views [N, V, V], in batches of `batch_size`."""
    parts = [_look(run, views[start:start + batch_size], zoom, size, with_maps)
             for start in range(0, len(views), batch_size)]
    if not parts:
        return Looks(np.zeros((0, 2), np.float32), np.zeros(0), np.zeros((0, 3)), np.zeros(0, bool), np.zeros(0))
    fields = {name: np.concatenate([getattr(p, name) for p in parts]) for name in
              ("logits", "kidney_fraction", "boxes", "found", "tumor_peak")}
    return Looks(**fields, maps=np.concatenate([p.maps for p in parts]) if with_maps else None)


def _look(run: Runner, views: np.ndarray, zoom: Zoom, size: int, with_maps: bool) -> Looks:
    _, overview_logits = run(_crops(views, [FULL_VIEW] * len(views), size))
    overview = sigmoid(overview_logits)
    kidney = overview[:, 0] > zoom.threshold
    found_boxes = [zoom.box(k) for k in kidney]
    boxes = np.asarray([zoom.prior if box is None else box for box in found_boxes], np.float32)
    logits, zoom_logits = run(_crops(views, boxes, size))
    zoomed = sigmoid(zoom_logits)
    maps = None
    if with_maps:
        shape = views.shape[1:]
        maps = np.stack([_on_view(o, z, box, shape) for o, z, box in zip(overview, zoomed, boxes)])
    return Looks(np.asarray(logits, np.float32), kidney.mean((1, 2)), boxes,
                 np.array([box is not None for box in found_boxes]), tumor_peak(zoomed), maps)


def _on_view(overview: np.ndarray, zoomed: np.ndarray, box, shape: tuple[int, int]) -> np.ndarray:
    """Maps on the view's grid: the zoom's inside its box, the overview's elsewhere."""
    inside = paste(np.ones((1,) + zoomed.shape[1:], np.float32), box, shape)[0] > 0.5
    return np.where(inside, paste(zoomed, box, shape), paste(overview, FULL_VIEW, shape)).astype(np.float32)
