"""Decode every sample once into uint8 rows [N, S, S]; unreadable files are reported and skipped.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kidneyct.data.cache import CacheHit, CacheSettings, DecodeCache, cache_key
from kidneyct.data.catalogue import Sample
from kidneyct.data.jpeg_torch import decode_jpeg_files, is_plain_jpeg
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


def _decode_file(task: tuple[str, list[int | None], dict]) -> tuple[list[np.ndarray] | None, str | None]:
    path, indices, prep_values = task
    prep = Preprocessing.from_dict(prep_values)
    wanted = None if indices == [None] else [int(i) for i in indices]
    try:
        slices = read_slices(path, wanted)
        return [prep.to_uint8(s) for s in slices], None
    except ImageReadError as error:
        return None, error.reason
    except Exception as error:  # a reader bug must not take down the batch either
        return None, f"unexpected {type(error).__name__}: {error}"


def default_workers() -> int:
    return max(1, min(8, (os.cpu_count() or 1)))


def decode_samples(
    samples: list[Sample], prep: Preprocessing, workers: int | None = None, progress: bool = True,
    cache: CacheSettings | None = None, jpeg_device=None, superset: list[Sample] | None = None,
    with_masks: bool = True,
) -> DecodedSet:
    """Rows for `samples` from the cache when there is one for them (or for `superset`, a sample list
    that contains them, such as the whole catalogue a training run cached), else decoded (and cached)."""
    folder = cache.resolve() if cache is not None else None
    if prep.body_crop or prep.kidney_crop:
        jpeg_device = None  # the torch JPEG path resizes without cropping: the Pillow path crops
    writer = None
    if folder is not None:
        store = DecodeCache(folder)
        for candidate in ([superset] if superset else []) + [samples]:
            started = time.perf_counter()
            hit = store.load(cache_key(candidate, prep))
            if hit is not None and all(s.key in hit.rows for s in samples):
                log.info("loaded %d cached images from %s in %.2f s", len(hit.images),
                         store.paths(hit.meta["key"])[0], time.perf_counter() - started)
                return _from_hit(hit, samples, store.paths(hit.meta["key"])[0])
        key = cache_key(samples, prep)
        try:
            writer = store.writer(key, (len(samples), prep.image_size, prep.image_size))
        except OSError as error:
            log.warning("cannot write a cache in %s (%s): decoding into memory", folder, error)
    sink = writer.images if writer is not None else np.zeros((len(samples), prep.image_size, prep.image_size),
                                                               np.uint8)
    started = time.perf_counter()
    try:
        skipped, decoders = _decode_into(sink, samples, prep, workers, progress, jpeg_device)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    seconds = time.perf_counter() - started
    log.info("decoded %d images in %.1f s (%s)", len(samples), seconds, ", ".join(decoders) or "nothing")
    cache_file = None
    if writer is not None:
        info = {"preprocessing": prep.to_dict(), "decoders": decoders, "decode_seconds": round(seconds, 3)}
        sink = writer.commit(samples, skipped, info)
        cache_file = store.paths(key)[0]
    bad = {path for path, _ in skipped}
    keep = [i for i, s in enumerate(samples) if s.path not in bad]
    return DecodedSet(Rows(sink, np.array(keep, np.int64)), [samples[i] for i in keep], skipped, cache_file)


def _from_hit(hit: CacheHit, samples: list[Sample], path: Path) -> DecodedSet:
    bad = {file for file, _ in hit.skipped}
    keep = [s for s in samples if s.path not in bad]
    files = {s.path for s in samples}
    skipped = [item for item in hit.skipped if item[0] in files]
    rows = np.array([hit.rows[s.key] for s in keep], np.int64)
    return DecodedSet(Rows(hit.images, rows), keep, skipped, path, from_cache=True)


def _decode_into(sink: np.ndarray, samples: list[Sample], prep: Preprocessing, workers: int | None,
                 progress: bool, jpeg_device) -> tuple[list[tuple[str, str]], list[str]]:
    by_file: dict[str, list[int]] = defaultdict(list)
    for position, sample in enumerate(samples):
        by_file[sample.path].append(position)
    files = list(by_file)
    bar = progress_bar(total=len(files), enabled=progress, desc="decode", unit="file")
    decoders = []
    if jpeg_device is not None:
        jpegs = [f for f in files if is_plain_jpeg(samples[by_file[f][0]])]
        declined = set()
        for position, image in decode_jpeg_files(jpegs, prep, jpeg_device):
            if image is None:
                declined.add(jpegs[position])
            else:
                sink[by_file[jpegs[position]][0]] = image
                bar.update()
        if len(jpegs) > len(declined):
            decoders.append(f"torchvision on {jpeg_device}: {len(jpegs) - len(declined)} files")
        done = set(jpegs) - declined
        files = [f for f in files if f not in done]
    tasks = [(f, [samples[p].slice_index for p in by_file[f]], prep.to_dict()) for f in files]
    workers = default_workers() if workers is None else workers
    failures: dict[str, str] = {}

    def collect(file, arrays, reason):
        if arrays is None:
            failures[file] = reason
        else:
            for position, array in zip(by_file[file], arrays):
                sink[position] = array
        bar.update()

    if workers > 1 and len(tasks) > 64:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = pool.map(_decode_file, tasks, chunksize=max(1, len(tasks) // (workers * 16)))
            for file, (arrays, reason) in zip(files, results):
                collect(file, arrays, reason)
    else:
        for file, task in zip(files, tasks):
            collect(file, *_decode_file(task))
    bar.close()
    if tasks:
        decoders.append(f"readers in {workers if workers > 1 and len(tasks) > 64 else 1} process(es): "
                        f"{len(tasks)} files")
    skipped = [(file, failures[file]) for file in by_file if file in failures]
    return skipped, decoders
