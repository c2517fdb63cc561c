"""The read limits: how many bytes one input may expand to once decoded (the decoded-size budget) and how
many pixels a side may have, both checked from headers before any pixel is allocated. A small file (a
deflated DICOM, a .nii.gz of zeros, a PNG declaring a huge canvas) can claim gigabytes; the readers refuse
it with an ImageReadError instead.

The limits are set per task (`with read_limits(...)`): a context variable, so a batch prediction and each
server request carry their own without passing them through every reader.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from kidneyct.config import MAX_DECODED_MB
from kidneyct.errors import OverBudget

MIB = 1024 * 1024
DEFAULT_MAX_DECODED_BYTES = MAX_DECODED_MB * MIB
# Far above any CT export (512-1024 px); stops decompression bombs before any pixel is decoded.
MAX_SIDE = 8192


@dataclass(frozen=True)
class ReadLimits:
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES  # one input: all its frames or slices
    max_side: int = MAX_SIDE  # pixels per side of a slice


_LIMITS: ContextVar[ReadLimits] = ContextVar("kidneyct_read_limits", default=ReadLimits())


@contextmanager
def read_limits(max_decoded_bytes: int | None = None, max_side: int | None = None) -> Iterator[ReadLimits]:
    """Readers called inside the block refuse inputs beyond these limits (None: the current one).

    Args:
        max_decoded_bytes: the largest decoded size of one input, in bytes.
        max_side: the largest side of a slice, in pixels (at most MAX_SIDE).

    Returns:
        A context manager yielding the limits in force inside it.
    """
    current = _LIMITS.get()
    limits = ReadLimits(current.max_decoded_bytes if max_decoded_bytes is None else int(max_decoded_bytes),
                        current.max_side if max_side is None else min(int(max_side), MAX_SIDE))
    if limits.max_decoded_bytes <= 0 or limits.max_side <= 0:
        raise ValueError(f"read limits must be positive, got {limits}")
    token = _LIMITS.set(limits)
    try:
        yield limits
    finally:
        _LIMITS.reset(token)


def current_budget() -> int:
    """The decoded-size budget in force, in bytes."""
    return _LIMITS.get().max_decoded_bytes


def check_decoded_size(path: str | Path, nbytes: int, what: str) -> None:
    """Raise an OverBudget (an ImageReadError) when `nbytes` (a decoded size declared by a header) exceeds the budget.

    Args:
        path: the file, named in the error.
        nbytes: the size the header says its data decode to.
        what: the header's claim in words, e.g. '3 frame(s) of 512x512 x 16 bits'.
    """
    budget = current_budget()
    if nbytes > budget:
        raise OverBudget(path, f"{what} would decode to {nbytes / MIB:,.1f} MiB, above the "
                                   f"{budget / MIB:,.1f} MiB decoded-size budget (--max-decoded-mb)")


def check_side(path: str | Path, width: int, height: int) -> None:
    """Raise an OverBudget (an ImageReadError) when a header declares a side beyond the limit in force."""
    limit = _LIMITS.get().max_side
    if width > limit or height > limit:
        raise OverBudget(path, f"image is {width}x{height} pixels, above the {limit}-pixel limit")
