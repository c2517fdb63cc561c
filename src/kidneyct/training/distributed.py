"""torchrun support: one process per device (NCCL on CUDA, gloo on CPU), each with its shard of every batch.

Without torchrun's environment (WORLD_SIZE unset or 1) everything here is a no-op for one process.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from kidneyct.runtime import resolve_device

log = logging.getLogger(__name__)


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False  # this context initialised the process group and destroys it

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def shard(self, n: int) -> slice:
        """This rank's contiguous share of n rows."""
        return slice(n * self.rank // self.world_size, n * (self.rank + 1) // self.world_size)

    def local_positions(self, batch: int, device) -> torch.Tensor | slice:
        """Positions of this rank's images within a global batch of `batch` (every world_size-th);
        a plain slice for one process, which indexes without a gather."""
        if not self.enabled:
            return slice(None)
        return torch.arange(self.rank, batch, self.world_size, device=device)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return tensor
        # NCCL reduces CUDA tensors, gloo CPU tensors.
        comm = "cuda" if dist.get_backend() == "nccl" else "cpu"
        moved = tensor.to(self.device if comm == "cuda" else comm)
        dist.all_reduce(moved)
        return moved.to(tensor.device)

    def assemble(self, part: torch.Tensor, n: int, dim: int = 0) -> torch.Tensor:
        """Every rank's shard (rows self.shard(n) along `dim`) put together on every rank."""
        if not self.enabled:
            return part
        shape = list(part.shape)
        shape[dim] = n
        full = torch.zeros(shape, dtype=part.dtype, device=part.device)
        index = [slice(None)] * len(shape)
        index[dim] = self.shard(n)
        full[tuple(index)] = part
        return self.all_reduce_sum(full)

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """DistributedDataParallel around the module whose parameters train (gradients averaged)."""
        if not self.enabled:
            return module
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids)

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def is_main_process() -> bool:
    """Rank 0 under torchrun, or a process of its own."""
    return int(os.environ.get("RANK", "0")) == 0


def init_distributed(device_name: str = "auto") -> DistContext:
    """A context from torchrun's RANK / WORLD_SIZE / LOCAL_RANK; a single-process one without them."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    requested = resolve_device(device_name)
    if world_size <= 1:
        return DistContext(device=requested)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if requested.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend, device_id=device if backend == "nccl" else None)
    log.info("rank %d of %d on %s (%s)", rank, world_size, device, backend)
    return DistContext(rank, world_size, local_rank, device, owns)
