"""Inputs read and preprocessed in worker processes while the model runs on the ones before them.

`prepared_inputs` is an ordered, bounded producer: it keeps up to `ahead` inputs in flight in a pool of
forked worker processes and hands them back in input order, so the consumer's forward passes overlap the
decoding of what comes next. An input that cannot be read is a result like any other (`Prepared.images`
None, the reasons in `Prepared.skipped`); one unexpected failure never stops the others. Workers are
forked, not spawned: a spawned worker would import torch again (seconds) before its first slice. Workers
end with their parent: after a `kill -9` of `predict` they would otherwise wait on the task queue forever,
each holding its memory.
"""

from __future__ import annotations

import logging
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np

from kidneyct.errors import ImageReadError
from kidneyct.io import CTSlice, InputItem, read_item
from kidneyct.io.budget import DEFAULT_MAX_DECODED_BYTES, read_limits
from kidneyct.preprocess import Preprocessing

log = logging.getLogger(__name__)

_NO_PIXELS = np.zeros((0, 0), np.float32)


@dataclass
class Prepared:
    """One input read and preprocessed: its slices, the model's images, and what was left out."""

    item: InputItem
    slices: list[CTSlice]  # in reading order; pixels dropped (an empty array), the images below are what counts
    images: np.ndarray | None  # uint8 [n, S, S]; None when the input could not be read at all
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): the input, or files of it
    looks: list | None = None  # per slice, what `look` returned (the scope gate's kidney locator), when given
    # per slice, (its shape, the crop box of its cached form, the box's pixels kept (None: all; the others were
    # blanked)): where the images' pixels lie on the slice's grid
    frames: list[tuple] = field(default_factory=list)


def failure_reason(error: Exception) -> str:
    """A skipped row's reason for an error no reader anticipated (one odd file must not end the batch)."""
    if isinstance(error, MemoryError):
        return "ran out of memory (MemoryError); a lower --max-decoded-mb refuses such inputs from their headers"
    return f"failed: {type(error).__name__}: {error}"


def prepare(item: InputItem, prep: Preprocessing, look: Callable | None = None,
            max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES, threads: int = 1) -> Prepared:
    """Read one input and preprocess its slices; a failure becomes the result's `skipped`, never an exception.

    Args:
        item: a file, DICOM series folder or NIfTI volume (see `kidneyct.io.expand_inputs`).
        prep: the checkpoint's preprocessing.
        look: run on each read slice while its pixels are at hand (the scope gate's kidney locator).
        max_decoded_bytes: the decoded-size budget of the input (see `kidneyct.io.budget`).
        threads: threads preprocessing its slices (a volume's body crops: numpy lets go of the GIL for part of
            each, so two threads take about 3/4 of the time of one).

    Returns:
        A Prepared with images [n, S, S], or with images None and the reasons in `skipped`.
    """
    try:
        with read_limits(max_decoded_bytes):
            slices, partial_skips = read_item(item)
        if threads > 1 and len(slices) > 1:
            with ThreadPoolExecutor(threads) as pool:
                framed = list(pool.map(partial(_framed, prep), slices))
        else:
            framed = [_framed(prep, ct_slice) for ct_slice in slices]
        images, frames = np.stack([image for image, _ in framed]), [frame for _, frame in framed]
        looks = [look(s) for s in slices] if look is not None else None
    except ImageReadError as error:
        return Prepared(item, [], None, [*getattr(error, "skipped", []), (error.path, error.reason)])
    except Exception as error:  # noqa: BLE001 - isolation: a reader bug on one file must not take down the batch
        return Prepared(item, [], None, [(str(item.path), failure_reason(error))])
    # Slices travel back without their pixels: the uint8 images are a fraction of their size.
    return Prepared(item, [replace(s, pixels=_NO_PIXELS) for s in slices], images, list(partial_skips), looks, frames)


def _framed(prep: Preprocessing, ct_slice: CTSlice) -> tuple[np.ndarray, tuple]:
    """prep.to_uint8 of a slice, with where the image lies on the slice (its shape, crop box and kept pixels)."""
    unit = prep.to_unit(ct_slice)
    geometry = prep.geometry(unit)
    return geometry.image(unit), (tuple(unit.shape), geometry.box, geometry.keep)


def default_workers() -> int:
    """Worker processes for reading: one per CPU core, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def prepared_inputs(items: list[InputItem], prep: Preprocessing, workers: int | None = None,
                    ahead: int | None = None, look: Callable | None = None,
                    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES) -> Iterator[Prepared]:
    """`prepare(item, prep, look, max_decoded_bytes)` for every item, in order, computed in `workers`
    processes while the caller consumes earlier results.

    Args:
        items: the inputs, in the order results are wanted.
        prep: the checkpoint's preprocessing.
        look: see `prepare`.
        max_decoded_bytes: see `prepare`.
        workers: worker processes (default: one per core, at most 8); 0 or 1, or a single input, reads in
            this process (no start-up cost: what a one-slice predict wants), a single input's slices then
            preprocessed in `workers` threads.
        ahead: inputs in flight at most (default 4 per worker), bounding memory for long lists.

    Returns:
        An iterator of Prepared, one per item, in the items' order.
    """
    task = partial(prepare, prep=prep, look=look, max_decoded_bytes=max_decoded_bytes)
    workers = default_workers() if workers is None else workers
    if workers <= 1 or len(items) <= 1:
        return map(partial(task, threads=max(1, workers)), items)
    return ordered_map(task, items, workers, ahead or 4 * workers)


def ordered_map(task: Callable, items: Iterable, workers: int, ahead: int) -> Iterator:
    """task(item) for each item in a process pool, yielded in order with at most `ahead` in flight. If the
    pool breaks (a worker killed, say by the out-of-memory killer), the rest is computed in this process."""
    queue = iter(items)
    pending: deque[tuple[object, Future]] = deque()
    pool = ProcessPoolExecutor(workers, mp_context=_fork_context(), initializer=end_with_parent,
                               initargs=(os.getpid(),))
    try:
        for item in queue:
            pending.append((item, pool.submit(task, item)))
            if len(pending) >= ahead:
                break
        while pending:
            item, future = pending.popleft()
            try:
                result = future.result()
            except BrokenProcessPool as error:
                log.warning("a reader process died (%s): reading the rest in this process", error)
                pool.shutdown(wait=False, cancel_futures=True)
                yield from map(task, [item, *(entry[0] for entry in pending), *queue])
                return
            for item in queue:  # refill before yielding, so workers stay busy while the caller works
                pending.append((item, pool.submit(task, item)))
                break
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def end_with_parent(parent_pid: int) -> None:
    """In a worker process: be killed when the parent dies. Linux: the kernel sends SIGKILL (prctl
    PR_SET_PDEATHSIG; the pool starts its workers from the caller's thread, which lives as long as the pool).
    Elsewhere: a daemon thread polls the parent's pid once a second.

    Args:
        parent_pid: the pid of the process that made the pool (os.getpid() there).
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            _watch_parent(parent_pid)
    else:
        _watch_parent(parent_pid)
    if os.getppid() != parent_pid:  # the parent died before the rule took effect
        os._exit(1)


def _watch_parent(parent_pid: int) -> None:
    def watch():
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="kidneyct-parent-watch", daemon=True).start()


def _fork_context():
    """Fork where the platform has it (Linux): workers start in milliseconds with the modules already loaded."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else methods[0])
