"""Checkpoint files: read with ``torch.load(weights_only=True)`` (nothing in a file can run code), written
atomically (an interrupted run never leaves a half-written file). torch is imported only here, when a file is
read or written."""

from __future__ import annotations

import pickle
from pathlib import Path

from kidneyct.checkpoint.schema import Checkpoint
from kidneyct.errors import CheckpointError
from kidneyct.io.atomic import atomic_write


def read_checkpoint(path: str | Path) -> Checkpoint:
    """The checkpoint in `path`, of any schema version, checked. Anything needing arbitrary unpickling is refused.

    Raises:
        CheckpointError naming the file: missing, unreadable, refused, not a kidneyct checkpoint, newer than this
        kidneyct, or inconsistent.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: refused: the file needs arbitrary code to unpickle, which kidneyct never runs "
            f"(weights_only load failed: {str(error).splitlines()[0]})"
        ) from None
    except Exception as error:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(error).__name__}: {error})") from None
    return Checkpoint.from_payload(payload, path)


def write_checkpoint(checkpoint: Checkpoint, path: str | Path) -> Path:
    """Write `checkpoint` to `path` atomically; returns the path."""
    import torch

    payload = checkpoint.to_payload()
    atomic_write(path, lambda stream: torch.save(payload, stream))
    return Path(path)
