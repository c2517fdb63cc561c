"""Decode every sample once into uint8 rows [N, S, S], and its mask, when it has one, into a second array moved
by the same crop and resize (data/masks.py); unreadable files are reported and skipped, unusable masks
reported and the image kept without a mask.

With a cache folder the rows land in a memory-mapped file (see cache.py) that later runs open in well
under a second; without one they stay in memory. JPEGs go through torchvision's decoder on `jpeg_device`
when one is given (nvjpeg on CUDA), every other file (and any JPEG that path declines) through the
Pillow/pydicom/nibabel readers in worker processes, one task per file so a volume is read once.
"""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kidneyct.data.cache import CacheHit, CacheSettings, DecodeCache, cache_key
from kidneyct.data.catalogue import Sample
from kidneyct.data.jpeg_torch import decode_jpeg_files, is_plain_jpeg
from kidneyct.data.masks import UNKNOWN, read_mask, unknown_masks
from kidneyct.data.rows import Rows
from kidneyct.io import ImageReadError, read_slices
from kidneyct.preprocess import Preprocessing
from kidneyct.runtime import progress_bar

log = logging.getLogger(__name__)


@dataclass
class DecodedSet:
    images: Rows  # uint8 [N, S, S], rows match `samples`; memory-mapped when cached
    samples: list[Sample]  # the readable samples, in input order
    skipped: list[tuple[str, str]]  # (file, reason)
    cache_file: Path | None = None  # the cache these rows live in, if any
    from_cache: bool = False  # loaded, not decoded
    masks: Rows | None = None  # uint8 [N, S, S] like `images`: labels 0-3, UNKNOWN (255) where no mask
    mask_skipped: list[tuple[str, str]] = field(default_factory=list)  # (mask file, reason): image kept without

    def __post_init__(self):
        if self.masks is None:  # no mask at all: a broadcast array, no memory
            self.masks = Rows(unknown_masks(self.images.base.shape), self.images.index)


@dataclass
class _FileResult:
    """What decoding one file gave: its slices' cached forms (None and a reason when unreadable) and their
    masks (None when it has none, with a reason when its mask was refused)."""

    images: list[np.ndarray] | None
    reason: str | None = None
    masks: list[np.ndarray] | None = None
    mask_reason: str | None = None


def _decode_file(task: tuple[str, list[int | None], dict, str | None]) -> _FileResult:
    path, indices, prep_values, mask = task
    prep = Preprocessing.from_dict(prep_values)
    wanted = None if indices == [None] else [int(i) for i in indices]
    try:
        slices = read_slices(path, wanted)
        labels, mask_reason = _labels(mask, slices, wanted)
        if labels is None:
            return _FileResult([prep.to_uint8(s) for s in slices], mask_reason=mask_reason)
        pairs = [prep.to_uint8_with_mask(s, label) for s, label in zip(slices, labels)]
        return _FileResult([image for image, _ in pairs], masks=[m for _, m in pairs])
    except ImageReadError as error:
        return _FileResult(None, error.reason)
    except Exception as error:  # a reader bug must not take down the batch either
        return _FileResult(None, f"unexpected {type(error).__name__}: {error}")


def _labels(mask: str | None, slices, wanted: list[int] | None) -> tuple[list[np.ndarray] | None, str | None]:
    """The label maps of a file's slices, or (None, why) when its mask cannot be used: the image goes on."""
    if mask is None:
        return None, None
    try:
        return [read_mask(mask, None if wanted is None else index, s.pixels.shape)
                for index, s in zip(wanted or [None] * len(slices), slices)], None
    except ImageReadError as error:
        return None, error.reason
    except Exception as error:
        return None, f"unexpected {type(error).__name__}: {error}"


def default_workers() -> int:
    return max(1, min(8, (os.cpu_count() or 1)))


def decode_samples(
    samples: list[Sample], prep: Preprocessing, workers: int | None = None, progress: bool = True,
    cache: CacheSettings | None = None, jpeg_device=None, superset: list[Sample] | None = None,
    with_masks: bool = True,
) -> DecodedSet:
    """Rows for `samples` from the cache when there is one for them (or for `superset`, a sample list
    that contains them, such as the whole catalogue a training run cached), else decoded (and cached).
    With `with_masks`, samples with a mask file get it decoded beside the image, moved by the same geometry."""
    folder = cache.resolve() if cache is not None else None
    if prep.body_crop or prep.kidney_crop:
        jpeg_device = None  # the torch JPEG path resizes without cropping: the Pillow path crops
    masked = with_masks and any(s.mask for s in samples)
    writer = None
    if folder is not None:
        store = DecodeCache(folder)
        for candidate in ([superset] if superset else []) + [samples]:
            started = time.perf_counter()
            hit = store.load(cache_key(candidate, prep, with_masks))
            if hit is not None and all(s.key in hit.rows for s in samples) and (hit.masks is not None or not masked):
                log.info("loaded %d cached images from %s in %.2f s", len(hit.images),
                         store.paths(hit.meta["key"])[0], time.perf_counter() - started)
                return _from_hit(hit, samples, store.paths(hit.meta["key"])[0], with_masks)
        key = cache_key(samples, prep, with_masks)
        try:
            writer = store.writer(key, (len(samples), prep.image_size, prep.image_size), masked)
        except OSError as error:
            log.warning("cannot write a cache in %s (%s): decoding into memory", folder, error)
    shape = (len(samples), prep.image_size, prep.image_size)
    sink = writer.images if writer is not None else np.zeros(shape, np.uint8)
    mask_sink = (writer.masks if writer is not None else np.full(shape, UNKNOWN, np.uint8)) if masked else None
    started = time.perf_counter()
    try:
        outcome = _decode_into(_Sinks(sink, mask_sink), samples, prep, workers, progress, jpeg_device)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    seconds = time.perf_counter() - started
    log.info("decoded %d images in %.1f s (%s)", len(samples), seconds, ", ".join(outcome.decoders) or "nothing")
    report_mask_problems(outcome.mask_skipped)
    cache_file = None
    if writer is not None:
        info = {"preprocessing": prep.to_dict(), "decoders": outcome.decoders, "decode_seconds": round(seconds, 3)}
        sink, mask_sink = writer.commit(samples, outcome.skipped, info, outcome.mask_skipped)
        cache_file = store.paths(key)[0]
    bad = {path for path, _ in outcome.skipped}
    keep = np.array([i for i, s in enumerate(samples) if s.path not in bad], np.int64)
    masks = None if mask_sink is None else Rows(mask_sink, keep)
    return DecodedSet(Rows(sink, keep), [samples[i] for i in keep], outcome.skipped, cache_file,
                      masks=masks, mask_skipped=outcome.mask_skipped)


def report_mask_problems(mask_skipped: list[tuple[str, str]]) -> None:
    for path, reason in mask_skipped:
        log.warning("mask %s not used: %s; its image is used without a mask", path, reason)


def _from_hit(hit: CacheHit, samples: list[Sample], path: Path, with_masks: bool) -> DecodedSet:
    bad = {file for file, _ in hit.skipped}
    keep = [s for s in samples if s.path not in bad]
    files = {s.path for s in samples}
    skipped = [item for item in hit.skipped if item[0] in files]
    rows = np.array([hit.rows[s.key] for s in keep], np.int64)
    masks = Rows(hit.masks, rows) if hit.masks is not None and with_masks else None
    mask_files = {s.mask for s in samples if s.mask}
    mask_skipped = [tuple(item) for item in (hit.meta.get("masks") or {}).get("skipped", []) if item[0] in mask_files]
    return DecodedSet(Rows(hit.images, rows), keep, skipped, path, from_cache=True, masks=masks,
                      mask_skipped=mask_skipped)


@dataclass
class _Sinks:
    """Where decoded rows go: the images, and the masks (None when no sample has one)."""

    images: np.ndarray
    masks: np.ndarray | None


@dataclass
class _Outcome:
    skipped: list[tuple[str, str]]
    mask_skipped: list[tuple[str, str]]
    decoders: list[str]


def _decode_into(sinks: _Sinks, samples: list[Sample], prep: Preprocessing, workers: int | None,
                 progress: bool, jpeg_device) -> _Outcome:
    by_file: dict[str, list[int]] = defaultdict(list)
    for position, sample in enumerate(samples):
        by_file[sample.path].append(position)
    files = list(by_file)
    bar = progress_bar(total=len(files), enabled=progress, desc="decode", unit="file")
    decoders = []
    if jpeg_device is not None:
        # A file with a mask goes through the Pillow path, which moves the mask with the image.
        jpegs = [f for f in files if is_plain_jpeg(samples[by_file[f][0]])
                 and (sinks.masks is None or not samples[by_file[f][0]].mask)]
        declined = set()
        for position, image in decode_jpeg_files(jpegs, prep, jpeg_device):
            if image is None:
                declined.add(jpegs[position])
            else:
                sinks.images[by_file[jpegs[position]][0]] = image
                bar.update()
        if len(jpegs) > len(declined):
            decoders.append(f"torchvision on {jpeg_device}: {len(jpegs) - len(declined)} files")
        done = set(jpegs) - declined
        files = [f for f in files if f not in done]
    mask_of = {f: samples[by_file[f][0]].mask if sinks.masks is not None else None for f in files}
    tasks = [(f, [samples[p].slice_index for p in by_file[f]], prep.to_dict(), mask_of[f]) for f in files]
    workers = default_workers() if workers is None else workers
    failures: dict[str, str] = {}
    mask_skipped: list[tuple[str, str]] = []

    def collect(file, result: _FileResult):
        if result.images is None:
            failures[file] = result.reason
        else:
            for position, array in zip(by_file[file], result.images):
                sinks.images[position] = array
            for position, mask in zip(by_file[file], result.masks or []):
                sinks.masks[position] = mask
            if result.mask_reason is not None:
                mask_skipped.append((mask_of[file], result.mask_reason))
        bar.update()

    if workers > 1 and len(tasks) > 64:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = pool.map(_decode_file, tasks, chunksize=max(1, len(tasks) // (workers * 16)))
            for file, result in zip(files, results):
                collect(file, result)
    else:
        for file, task in zip(files, tasks):
            collect(file, _decode_file(task))
    bar.close()
    if tasks:
        decoders.append(f"readers in {workers if workers > 1 and len(tasks) > 64 else 1} process(es): "
                        f"{len(tasks)} files")
    skipped = [(file, failures[file]) for file in by_file if file in failures]
    return _Outcome(skipped, mask_skipped, decoders)
