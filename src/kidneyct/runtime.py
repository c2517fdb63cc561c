"""Device selection, mixed precision, seeding, BLAS threads and progress bars: the few places that differ between
CPU and CUDA, used by every stage from decoding to serving. torch is imported by the functions that need it: a
prediction in onnxruntime shows a progress bar without it."""

from __future__ import annotations

import contextlib
import os
import random

from typing import TYPE_CHECKING

import numpy as np

from kidneyct.errors import DeviceUnavailable

if TYPE_CHECKING:
    import torch


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    import torch

    if isinstance(name, torch.device):
        return name
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return device


def autocast(device: torch.device):
    """bf16 autocast on CUDA (no loss scaling needed); full precision on CPU."""
    import torch

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_backend(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def cpu_threads() -> int:
    import torch

    return int(os.environ.get("OMP_NUM_THREADS", 0)) or torch.get_num_threads()


@contextlib.contextmanager
def single_threaded_blas():
    """numpy's BLAS on one thread inside the block. The small matrix products of the zoom's crop and paste
    (kidneyct.preprocess.zoom) run as fast on one thread as on two, and OpenBLAS's threads spin-wait for a busy
    core: with another process on the CPU, 300 pastes took 14 s on two threads against 0.4 s on one."""
    from threadpoolctl import ThreadpoolController  # deferred: the controller looks up the loaded libraries

    with ThreadpoolController().limit(limits=1, user_api="blas"):
        yield


def progress_bar(iterable=None, enabled: bool = True, **kwargs):
    """tqdm bar shown on terminals only (disable=None), so logs and CI output stay readable."""
    from tqdm.auto import tqdm  # imported here for start-up speed: only runs that show a bar need it

    return tqdm(iterable, disable=None if enabled else True, leave=False, **kwargs)
