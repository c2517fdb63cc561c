"""Fuzzing the readers: Hypothesis mutates small valid PNG, JPEG, DICOM and NIfTI files (byte flips,
interesting values over header fields, truncation, insertion, deletion, duplication; PNG chunk CRCs are
repaired half the time so that mutations reach past the CRC check) and every result goes through
`read_slices`. The property: the readers either return checked slices or raise ImageReadError; anything
else escaping is a bug, and so is memory beyond the decoded-size budget.

Needs Hypothesis (the dev extra). Used by tests/io/test_fuzz.py (a short run) and benchmarks/fuzz.py.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kidneyct.errors import ImageReadError
from kidneyct.io import read_slices
from kidneyct.io.budget import read_limits
from kidneyct.io.validate import MIN_SIDE
from kidneyct.synthetic.bad_files import seed_files

# Values that sit on boundaries of the integer fields headers hold (sizes, counts, offsets).
INTERESTING = (b"\x00", b"\xff", b"\x7f", b"\x80", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff",
               b"\x00\x00\x01\x00", b"\xff\xff", b"\x00\x80", b"\x01\x00\x00\x00\x00\x00\x00\x00")
HEAD = 1024  # most mutations land in the first bytes, where the headers are


def _mutate(draw, data: bytearray) -> bytearray:
    from hypothesis import strategies as st

    size = len(data)
    where = draw(st.integers(0, max(0, min(size, HEAD) - 1)) | st.integers(0, max(0, size - 1)))
    operation = draw(st.sampled_from(["flip", "interesting", "truncate", "insert", "delete", "duplicate"]))
    if operation == "flip" and size:
        data[where] ^= 1 << draw(st.integers(0, 7))
    elif operation == "interesting":
        value = draw(st.sampled_from(INTERESTING))
        data[where:where + len(value)] = value
    elif operation == "truncate":
        del data[where:]
    elif operation == "insert":
        data[where:where] = draw(st.binary(min_size=1, max_size=64))
    elif operation == "delete":
        del data[where:where + draw(st.integers(1, 256))]
    elif operation == "duplicate":
        data[where:where] = data[where:where + draw(st.integers(1, 512))]
    return data


def fix_png_crcs(data: bytes) -> bytes:
    """Recompute every chunk's CRC of a (mutated) PNG, as far as its chunk lengths can be followed."""
    out, at = bytearray(data[:8]), 8
    while at + 12 <= len(data):
        length = struct.unpack(">I", data[at:at + 4])[0]
        end = at + 8 + length
        if end + 4 > len(data):
            break
        out += data[at:end] + struct.pack(">I", zlib.crc32(data[at + 4:end]))
        at = end + 4
    return bytes(out + data[at:])


def mutated_files():
    """A Hypothesis strategy of (file name, bytes): a seed file with one to four mutations."""
    from hypothesis import strategies as st

    seeds = seed_files()

    @st.composite
    def mutated(draw):
        name = draw(st.sampled_from(sorted(seeds)))
        data = bytearray(seeds[name])
        for _ in range(draw(st.integers(1, 4))):
            data = _mutate(draw, data)
        if name.endswith(".png") and draw(st.booleans()):
            return name, fix_png_crcs(bytes(data))
        return name, bytes(data)

    return mutated()


@dataclass
class Outcome:
    read: int = 0  # mutated files still read into valid slices
    refused: int = 0  # refused with an ImageReadError (the expected way to fail)
    max_rise_mib: float = 0.0  # the largest rise of resident memory while reading one file
    peak_rss_mib: float = 0.0  # the process's peak resident memory while reading


def check_file(path: Path, outcome: Outcome) -> None:
    """The property for one file: readable into checked slices, or refused with ImageReadError. Any other
    exception propagates (an escape); slices that are not 2-D, finite and large enough fail an assertion."""
    try:
        slices = read_slices(path)
    except ImageReadError:
        outcome.refused += 1
        return
    for ct_slice in slices:
        pixels = ct_slice.pixels
        assert pixels.ndim == 2 and min(pixels.shape) >= MIN_SIDE and np.isfinite(pixels).all(), path
    outcome.read += 1


def read_case(folder: Path, name: str, data: bytes, budget: int, outcome: Outcome) -> None:
    """Write one mutated file into `folder` and `check_file` it under a decoded-size budget, recording its
    memory in `outcome` (escapes propagate, after the memory is recorded).

    Args:
        folder: where the file is written (named after its seed, so that its suffix is the seed's).
        name, data: the seed's name and the mutated bytes.
        budget: the decoded-size budget, in bytes.
        outcome: the counts and memory so far.
    """
    path = folder / f"case-{name}"
    path.write_bytes(data)
    reset_peak_rss()
    baseline = peak_rss_mib()  # right after the reset: the resident memory now
    try:
        with read_limits(budget):
            check_file(path, outcome)
    finally:
        peak = peak_rss_mib()
        outcome.max_rise_mib = max(outcome.max_rise_mib, peak - baseline)
        outcome.peak_rss_mib = max(outcome.peak_rss_mib, peak)


def peak_rss_mib() -> float:
    """This process's peak resident memory since the last `reset_peak_rss` (Linux: VmHWM), in MiB."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


def reset_peak_rss() -> None:
    """Start a new peak for `peak_rss_mib` (Linux: writing 5 to clear_refs resets VmHWM)."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
