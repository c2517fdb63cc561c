"""One way to write files that must never be seen half-written (checkpoints, cache sidecars, feature memos)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Callable

TEMPORARY_SUFFIX = ".tmp"  # temporaries are named .<target>.<random>.tmp beside their target


def atomic_write(path: str | Path, write: Callable[[IO], None], binary: bool = True) -> None:
    """Call `write(stream)` on a temporary file beside `path`, flush it to disk and rename it into place:
    readers (and a run killed mid-write) see the old file or the whole new one, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
    os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide shared caches from other users
    try:
        with os.fdopen(handle, "wb" if binary else "w") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporaries of atomic writes that a killed process left in `folder` (not below it). Call it
    only where no other process is writing: when a run opens its own folder.

    Args:
        folder: a run folder.

    Returns:
        The files removed.
    """
    removed = []
    for path in Path(folder).glob(f".*{TEMPORARY_SUFFIX}"):
        if path.is_file() and path.name.count(".") >= 3:  # .<target>.<random>.tmp, target with or without suffix
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
