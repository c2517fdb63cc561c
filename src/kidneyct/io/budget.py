"""The decoded-size budget: how many bytes one input may expand to once decoded, checked from its header
before any pixel is allocated. A small file (a deflated DICOM, a .nii.gz of zeros, a PNG declaring a huge
canvas) can claim gigabytes; the readers refuse it with an ImageReadError instead.

The budget is set per task (`with decode_budget(...)`): a context variable, so a batch prediction and each
server request carry their own without passing it through every reader.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from kidneyct.errors import ImageReadError

MIB = 1024 * 1024
# Default for files read on this machine: a 512 x 512 x 1000-slice int16 CT volume is 500 MiB.
DEFAULT_MAX_DECODED_BYTES = 1024 * MIB

_BUDGET: ContextVar[int] = ContextVar("kidneyct_decode_budget", default=DEFAULT_MAX_DECODED_BYTES)


@contextmanager
def decode_budget(max_bytes: int) -> Iterator[None]:
    """Readers called inside the block refuse inputs that would decode to more than `max_bytes`.

    Args:
        max_bytes: the largest decoded size of one input (pixels, all frames or slices), in bytes.
    """
    if max_bytes <= 0:
        raise ValueError(f"the decoded-size budget must be positive, got {max_bytes}")
    token = _BUDGET.set(int(max_bytes))
    try:
        yield
    finally:
        _BUDGET.reset(token)


def current_budget() -> int:
    """The decoded-size budget in force, in bytes."""
    return _BUDGET.get()


def check_decoded_size(path: str | Path, nbytes: int, what: str) -> None:
    """Raise an ImageReadError when `nbytes` (decoded size declared by a header) exceeds the budget.

    Args:
        path: the file, named in the error.
        nbytes: the size the header says its data decode to.
        what: the header's claim in words, e.g. '3 frames of 512x512 x 16 bits'.
    """
    budget = current_budget()
    if nbytes > budget:
        raise ImageReadError(path, f"{what} would decode to {nbytes / MIB:,.0f} MiB, above the "
                                   f"{budget / MIB:,.0f} MiB decoded-size budget (--max-decoded-mb)")
