"""Decode every sample once into a uint8 array [N, S, S]; unreadable files are reported and skipped."""

from __future__ import annotations

import os
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from kidneyct.data.catalogue import Sample
from kidneyct.data.transforms import Preprocessing
from kidneyct.io import ImageReadError, read_slices
from kidneyct.runtime import progress_bar


@dataclass
class DecodedSet:
    images: np.ndarray  # uint8 [N, S, S], rows match `samples`
    samples: list[Sample]  # the readable samples, in input order
    skipped: list[tuple[str, str]]  # (file, reason)


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
    samples: list[Sample], prep: Preprocessing, workers: int | None = None, progress: bool = True
) -> DecodedSet:
    # One task per file so a volume is read once for all its slices.
    by_file: dict[str, list[int]] = defaultdict(list)
    for position, sample in enumerate(samples):
        by_file[sample.path].append(position)
    files = list(by_file)
    tasks = [(f, [samples[p].slice_index for p in by_file[f]], prep.to_dict()) for f in files]
    workers = default_workers() if workers is None else workers
    images: list[np.ndarray | None] = [None] * len(samples)
    skipped: list[tuple[str, str]] = []
    bar = progress_bar(total=len(tasks), enabled=progress, desc="decode", unit="file")
    if workers > 1 and len(tasks) > 64:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = pool.map(_decode_file, tasks, chunksize=max(1, len(tasks) // (workers * 16)))
            for file, (arrays, reason) in zip(files, results):
                _collect(file, arrays, reason, by_file, images, skipped)
                bar.update()
    else:
        for file, task in zip(files, tasks):
            _collect(file, *_decode_file(task), by_file, images, skipped)
            bar.update()
    bar.close()
    keep = [i for i, image in enumerate(images) if image is not None]
    size = prep.image_size
    stacked = np.stack([images[i] for i in keep]) if keep else np.zeros((0, size, size), np.uint8)
    return DecodedSet(images=stacked, samples=[samples[i] for i in keep], skipped=skipped)


def _collect(file, arrays, reason, by_file, images, skipped):
    if arrays is None:
        skipped.append((file, reason))
        return
    for position, array in zip(by_file[file], arrays):
        images[position] = array
