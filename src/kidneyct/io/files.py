"""Opening input files safely: only regular files are ever opened. A named pipe in an input folder would
block `open()` until some writer appears (forever), and a device (/dev/zero) never ends; both are skipped
with a reason, decided from the file's status, or from the opened descriptor when it is swapped in later."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from kidneyct.errors import NotRegularFile

_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def file_problem(path: str | Path) -> str | None:
    """Why `path` cannot be read as an input file, from its status alone (nothing is opened).

    Args:
        path: a file named by the user or found in a folder (symbolic links are followed).

    Returns:
        None for a regular file, else the reason it is skipped.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        return f"cannot read the file ({error.strerror or error})"
    if stat.S_ISREG(mode):
        return None
    return f"{_kind(mode)}, not a regular file: skipped without opening it"


def _nonblocking(path: str, flags: int) -> int:
    # O_NONBLOCK: opening a FIFO for reading returns at once instead of waiting for a writer.
    return os.open(path, flags | os.O_NONBLOCK)


def open_regular(path: str | Path) -> BinaryIO:
    """`open(path, "rb")` for regular files only; NotRegularFile (an ImageReadError) for anything else,
    checked on the opened descriptor, so a file swapped for a pipe after a check is still refused.

    Args:
        path: the file.

    Returns:
        The binary file object, in blocking mode.
    """
    handle = open(path, "rb", opener=_nonblocking)
    try:
        mode = os.fstat(handle.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(path, f"{_kind(mode)}, not a regular file: not read")
        os.set_blocking(handle.fileno(), True)
    except BaseException:
        handle.close()
        raise
    return handle
