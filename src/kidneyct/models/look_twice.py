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
from kidneyct.runtime import single_threaded_blas

# (crops [B, 1, S, S] float32 in [0, 1]) -> (slice logits [B, K], map logits [B, 2, S, S]), both numpy
Runner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class Looks:
    """What the two looks found, per slice.

    Attributes:
        logits: slice logits [N, K]: of the zoom (one per kidney side) whose tumor probability is highest.
        kidney_fraction: share of the body view the overview calls kidney [N] (the scope gate reads it).
        boxes: the zoom boxes of each slice (one per kidney side found; the prior box when none was).
        found: whether the overview found a kidney [N] (False: the box is the zoom's prior).
        tumor_peak: the highest tumor probability inside the zooms' (slightly grown) kidney maps [N].
        maps: kidney and tumor probabilities [N, 2, V, V] on the body view's grid, or None when not asked for.
    """

    logits: np.ndarray
    kidney_fraction: np.ndarray
    boxes: list
    found: np.ndarray
    tumor_peak: np.ndarray
    maps: np.ndarray | None = None


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(1, keepdims=True))
    return shifted / shifted.sum(1, keepdims=True)


def _crops(views: np.ndarray, boxes, size: int) -> np.ndarray:
    unit = views.astype(np.float32) / 255.0
    return np.stack([cut(view, box, size) for view, box in zip(unit, boxes)])[:, None]


def tumor_peak(maps: np.ndarray, grow: int = 4) -> np.ndarray:
    """Per crop: the highest tumor probability within `grow` pixels of the kidney map (a tumor may bulge out
    of the kidney), from probability maps [N, 2, S, S]; 0 where no kidney is seen."""
    from scipy import ndimage

    peaks = []
    for kidney, tumor in maps:
        near = ndimage.maximum_filter(kidney, size=2 * grow + 1) > 0.5
        peaks.append(float(tumor[near].max()) if near.any() else 0.0)
    return np.asarray(peaks, np.float32)


def mirrored(run: Runner) -> Runner:
    """`run` that also sees each crop mirrored left-right and averages the slice logits and the map logits (the
    mirrored maps flipped back): test-time augmentation, as nnU-Net mirrors."""
    def both(crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, maps = run(crops)
        flipped_logits, flipped_maps = run(np.ascontiguousarray(crops[..., ::-1]))
        unflipped_maps = np.asarray(flipped_maps)[..., ::-1]
        return (np.asarray(logits) + np.asarray(flipped_logits)) / 2, (np.asarray(maps) + unflipped_maps) / 2

    return both


def look_twice(run: Runner, views: np.ndarray, zoom: Zoom, size: int, tumor_class: int, with_maps: bool = False,
               batch_size: int = 32, mirror: bool = False) -> Looks:
    """Both looks at uint8 body views [N, V, V], in batches of `batch_size` views; `mirror`: each crop also
    mirrored (`mirrored`)."""
    run = mirrored(run) if mirror else run
    with single_threaded_blas():  # the crops' and pastes' matrix products; the model's own threads are its own
        parts = [_look(run, views[start:start + batch_size], zoom, size, tumor_class, with_maps)
                 for start in range(0, len(views), batch_size)]
    if not parts:
        return Looks(np.zeros((0, 2), np.float32), np.zeros(0), [], np.zeros(0, bool), np.zeros(0))
    arrays = {name: np.concatenate([getattr(p, name) for p in parts])
              for name in ("logits", "kidney_fraction", "found", "tumor_peak")}
    return Looks(**arrays, boxes=[box for p in parts for box in p.boxes],
                 maps=np.concatenate([p.maps for p in parts]) if with_maps else None)


def overview(run: Runner, views: np.ndarray, zoom: Zoom, size: int, midline: bool = False) -> tuple[np.ndarray, list]:
    """The first look alone: map probabilities [N, 2, S, S] of the whole body views and, per view, the zoom
    boxes with whether a kidney was found (zoom.boxes_or_prior); `midline`: without what the zoom's midline rule
    rules out (inference and validation apply it; training's box refresh does not, so the rule leaves the
    trained weights as they were)."""
    _, overview_logits = run(_crops(views, [FULL_VIEW] * len(views), size))
    maps = sigmoid(overview_logits)
    if midline:
        maps = np.stack([zoom.clear_midline(view_maps) for view_maps in maps])
    return maps, [zoom.boxes_or_prior(kidney) for kidney in maps[:, 0]]


def _look(run: Runner, views: np.ndarray, zoom: Zoom, size: int, tumor_class: int, with_maps: bool) -> Looks:
    overview_maps, chosen = overview(run, views, zoom, size, midline=True)
    kidney = overview_maps[:, 0] > zoom.threshold
    boxes = [slice_boxes for slice_boxes, _ in chosen]
    owner = np.repeat(np.arange(len(views)), [len(b) for b in boxes])  # the slice of each crop
    flat = [box for slice_boxes in boxes for box in slice_boxes]
    logits, zoom_logits = run(_crops(views[owner], flat, size))
    zoomed = np.stack([zoom.clear_midline(maps, box) for maps, box in zip(sigmoid(zoom_logits), flat)])
    peaks = tumor_peak(zoomed)
    tumor = softmax(np.asarray(logits, np.float64))[:, tumor_class]
    best = [np.flatnonzero(owner == i)[np.argmax(tumor[owner == i])] for i in range(len(views))]
    slice_peaks = np.array([peaks[owner == i].max() for i in range(len(views))], np.float32)
    maps = None
    if with_maps:
        maps = np.stack([_on_view(overview_maps[i], zoomed[owner == i], boxes[i], views.shape[1:]) for i in range(len(views))])
    return Looks(np.asarray(logits, np.float32)[best], kidney.mean((1, 2)), boxes,
                 np.array([found for _, found in chosen]), slice_peaks, maps)


def _on_view(overview: np.ndarray, zoomed: np.ndarray, boxes, shape: tuple[int, int]) -> np.ndarray:
    """Maps on the view's grid: inside each zoom's box that zoom's (the highest where two overlap), the
    overview's elsewhere."""
    combined = paste(overview, FULL_VIEW, shape)
    inside_any = np.zeros(shape, bool)
    pasted = np.zeros_like(combined)
    for crop, box in zip(zoomed, boxes):
        inside = paste(np.ones((1,) + crop.shape[1:], np.float32), box, shape)[0] > 0.5
        pasted = np.where(inside, np.maximum(pasted, paste(crop, box, shape)), pasted)
        inside_any |= inside
    return np.where(inside_any, pasted, combined).astype(np.float32)


SLICE_PROBABILITIES = ("head", "map", "mean")  # where a segmenting model's slice tumor probability comes from


def slice_logits(looks: Looks, how: str, tumor_class: int) -> np.ndarray:
    """Two-class logits [N, 2] whose softmax is the slice's tumor probability taken from the slice head ("head"),
    the tumor map's peak inside the kidney ("map") or the mean of the two ("mean"); temperature scaling then
    calibrates them like any logits."""
    if how not in SLICE_PROBABILITIES:
        raise ValueError(f"unknown slice probability {how!r}; choose from {SLICE_PROBABILITIES}")
    if how == "head":
        return looks.logits
    tumor = looks.tumor_peak.astype(np.float64)
    if how == "mean":
        tumor = (tumor + softmax(np.asarray(looks.logits, np.float64))[:, tumor_class]) / 2
    tumor = np.clip(tumor, 1e-6, 1 - 1e-6)
    logits = np.zeros((len(tumor), 2), np.float32)
    logits[:, tumor_class] = np.log(tumor / (1 - tumor))
    return logits
