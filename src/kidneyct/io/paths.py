"""Output paths built from names that came from outside: UIDs from the network, values from file headers.
Each name must be one plain path component, and the path must resolve inside its root folder before
anything is written there (a UID of `..` or `/etc` never leaves `--out`)."""

from __future__ import annotations

from pathlib import Path

from kidneyct.errors import UnsafePath

_FORBIDDEN = ("/", "\\", "\0")


def inside(root: str | Path, *names: str) -> Path:
    """`root / name / ...`, checked to stay inside `root`.

    Args:
        root: the output folder.
        names: path components from outside (each a single name).

    Returns:
        The path (not resolved). Raises UnsafePath naming the component at fault.
    """
    root = Path(root)
    for name in names:
        if name in ("", ".", "..") or any(mark in name for mark in _FORBIDDEN):
            raise UnsafePath(f"{name!r} is not a plain file or folder name: refused inside {root}")
    path = root.joinpath(*names)
    base = root.resolve()
    resolved = path.resolve()
    if resolved == base or not resolved.is_relative_to(base):
        raise UnsafePath(f"{path} resolves to {resolved}, outside {base}: refused")
    return path
