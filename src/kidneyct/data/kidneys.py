"""Kidney masks of decoded training images (the anatomical locator run on the cached model input), kept
beside the decode cache so that every fold and every later run of the same cache pays for them once."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from kidneyct.data.rows import Rows
from kidneyct.io.atomic import atomic_write
from kidneyct.preprocess.kidney import LOCATOR_VERSION, locate_batch

log = logging.getLogger(__name__)


def _memo_path(cache_file: Path) -> Path:
    return cache_file.with_name(f"{cache_file.stem}.kidneys-v{LOCATOR_VERSION}.npy")


def kidney_masks(rows: Rows, cache_file: str | Path | None = None, workers: int | None = None) -> np.ndarray:
    """bool [len(rows), S, S]: the located kidneys of each row (empty where none was found).

    With `cache_file` (the decode cache the rows live in), the masks of every row of that cache are
    computed once, bit-packed beside it and read back by later calls; otherwise just `rows` are located.
    """
    workers = workers or max(1, min(8, os.cpu_count() or 1))
    if cache_file is None:
        return _locate(np.asarray(rows), workers)
    path = _memo_path(Path(cache_file))
    side = rows.shape[-1]
    if path.is_file():
        packed = np.load(path, mmap_mode="r")
        if len(packed) == len(rows.base):
            return np.unpackbits(packed[rows.index], axis=-1, count=side).astype(bool)
        log.warning("%s does not match its cache (%d rows, cache %d): locating again", path, len(packed),
                    len(rows.base))
    masks = _locate(np.asarray(rows.base), workers)
    atomic_write(path, lambda stream: np.save(stream, np.packbits(masks, axis=-1)))
    return masks[rows.index]


def _locate(images: np.ndarray, workers: int) -> np.ndarray:
    started = time.perf_counter()
    masks, scores = locate_batch(images, workers=workers)
    log.info("located kidneys in %d of %d images in %.1f s", int((scores > 0).sum()), len(images),
             time.perf_counter() - started)
    return masks
