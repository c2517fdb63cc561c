"""A lazy selection of rows of a (memory-mapped) image array: splits and batches without copying the set."""

from __future__ import annotations

import numpy as np
import torch


class Rows:
    """Rows `index` of `base` ([N, S, S] uint8, usually a read-only memmap), read only when asked for.

    Indexing with an int, a slice or an index array returns a plain ndarray holding just those rows,
    so a training split of a memory-mapped cache costs no RAM until its batches are gathered.
    """

    def __init__(self, base: np.ndarray, index: np.ndarray | None = None):
        self.base = base
        self.index = np.arange(len(base), dtype=np.int64) if index is None else np.asarray(index, np.int64)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.base.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.base.dtype

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.base.dtype.itemsize

    def __iter__(self):
        for start in range(0, len(self), 1024):  # read in blocks, yield row by row
            yield from self[start:start + 1024]

    def subset(self, positions) -> "Rows":
        return Rows(self.base, self.index[np.asarray(positions, np.int64)])

    def __getitem__(self, item) -> np.ndarray:
        if isinstance(item, torch.Tensor):
            item = item.cpu().numpy()
        picked = self.index[item]
        if np.ndim(picked) == 0:
            return np.array(self.base[int(picked)]).view(np.ndarray)
        return gather(self.base, picked)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        rows = gather(self.base, self.index)
        return rows if dtype is None else rows.astype(dtype)

    def to_tensor(self, device: torch.device | str = "cpu", chunk: int = 2048) -> torch.Tensor:
        """All rows as one tensor on `device`, copied in chunks (no second full copy on the host)."""
        out = torch.empty(self.shape, dtype=torch.uint8, device=device)
        for start in range(0, len(self), chunk):
            out[start:start + chunk].copy_(torch.from_numpy(self[start:start + chunk]))
        return out


def gather(base: np.ndarray, index: np.ndarray) -> np.ndarray:
    """base[index] reading the rows in file order (sequential pages), returned in the order asked."""
    if len(index) > 1 and np.any(index[1:] < index[:-1]):
        order = np.argsort(index, kind="stable")
        out = np.empty((len(index), *base.shape[1:]), base.dtype)
        out[order] = base[index[order]]
        return out
    if len(index) and index[-1] - index[0] == len(index) - 1:  # contiguous: one slice
        return np.array(base[index[0]:index[-1] + 1]).view(np.ndarray)
    return base[index].view(np.ndarray)
