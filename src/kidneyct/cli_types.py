"""Reusable argparse types: an option is checked when the command line is parsed, so no run starts that
cannot finish (a zero batch size, a NaN timeout, a port out of range, an --out that cannot be written).

Each type is a callable taking the option's text and returning its value, raising
argparse.ArgumentTypeError with a message argparse prints as `error: argument --x: ...`. No torch here:
`kidneyct --help` stays light.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def int_range(low: int, high: int | None = None):
    """An integer within [low, high] (no upper bound when `high` is None).

    Args:
        low, high: the accepted range, both included.
    """
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{'' if high is None else high}")
        return value

    return parse


def float_range(low: float, high: float, low_open: bool = False):
    """A finite number within [low, high] (or (low, high] when `low_open`); NaN and infinity are refused.

    Args:
        low, high: the accepted range.
        low_open: exclude `low` itself (for sizes and times that must be positive).
    """
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text} is not a finite number")
        if value < low or value > high or (low_open and value == low):
            raise argparse.ArgumentTypeError(f"{value:g} is outside {'(' if low_open else '['}{low:g}, {high:g}]")
        return value

    return parse


def device(text: str) -> str:
    """'auto', 'cpu', 'mps', 'cuda' or 'cuda:N' (whether the machine has it is checked when the run starts)."""
    if not DEVICE.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device: use auto, cpu, cuda, cuda:N or mps")
    return text


def existing_file(text: str) -> str:
    """A path to a readable file (a checkpoint)."""
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text}: not readable")
    return text


def _check_writable(path: Path, folder: bool) -> None:
    """Raise ArgumentTypeError unless `path` can be created or overwritten (as a folder when `folder`)."""
    if path.exists() and path.is_dir() != folder:
        raise argparse.ArgumentTypeError(f"{path}: exists and is {'not ' if folder else ''}a folder")
    existing = next(p for p in [path, *path.absolute().parents] if p.exists())
    if not existing.is_dir() and existing != path:
        raise argparse.ArgumentTypeError(f"{path}: {existing} is a file, not a folder")
    if not os.access(existing if existing.is_dir() else existing.parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{path}: {existing} is not writable")


def output_folder(text: str) -> str:
    """A folder that exists and is writable, or can be created."""
    _check_writable(Path(text), folder=True)
    return text


def output_file(*suffixes: str):
    """A file that can be written, ending in one of `suffixes` (any when none given).

    Args:
        suffixes: accepted endings, lower case, e.g. '.csv', '.json'.
    """
    def parse(text: str) -> str:
        if suffixes and not text.lower().endswith(suffixes):
            raise argparse.ArgumentTypeError(f"{text}: must end in {' or '.join(suffixes)}")
        _check_writable(Path(text), folder=False)
        return text

    return parse


def origin(text: str) -> str:
    """A web origin, scheme://host[:port] with no path ('http://localhost:3000'), as browsers send it."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment or parts.username:
        raise argparse.ArgumentTypeError(f"{text!r} is not an origin such as http://localhost:3000")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None
    return text.rstrip("/").lower()
