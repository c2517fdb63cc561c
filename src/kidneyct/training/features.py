"""Frozen-backbone feature cache: with a frozen backbone (eval mode, no gradients) the features of an
image never change, so they are computed once (plus a fixed number of augmented views) and only the
head trains, on feature vectors: one forward pass over the data instead of one per epoch.

Each epoch gives every image one of its V = 1 + views stored views at random; a run with fresh
augmentation every epoch sees more variety, which is the trade for the speed. The model keeps its
backbone, so checkpoints hold the full network and evaluate/predict run on images as before.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch

from kidneyct.data.rows import Rows
from kidneyct.io.atomic import atomic_write
from kidneyct.preprocess import Augmentation, Preprocessing, to_unit_tensor
from kidneyct.runtime import autocast
from kidneyct.training.distributed import DistContext
from kidneyct.training.engine import ImageStore

log = logging.getLogger(__name__)


def uses_feature_cache(model: torch.nn.Module, enabled: bool = True) -> bool:
    """Models that declare a frozen backbone with `features(x)` and a `head` (BackboneClassifier)."""
    return (enabled and bool(getattr(model, "freeze_backbone", False)) and callable(getattr(model, "features", None))
            and isinstance(getattr(model, "head", None), torch.nn.Module))


@torch.inference_mode()
def extract_features(model: torch.nn.Module, prep: Preprocessing, store: ImageStore, views: int,
                     augmentation: Augmentation | None, seed: int, ctx: DistContext,
                     batch_size: int = 256) -> torch.Tensor:
    """Features [1 + views, N, F] (float32, on the store's device): view 0 plain, the others augmented.

    Each rank computes its shard; the augmentation of image i in view v depends only on (seed, v, i),
    so the result is the same for any number of ranks.
    """
    device = store.device
    n = len(store)
    shard = ctx.shard(n)
    was_training = model.training
    model.eval()
    parts = []
    for view in range(1 + views):
        params = None
        if view and augmentation is not None:
            generator = torch.Generator(device=device).manual_seed(seed * 1009 + view)
            params = augmentation.sample(n, generator, device)
        chunks = []
        for start in range(shard.start, shard.stop, batch_size):
            stop = min(start + batch_size, shard.stop)
            images = to_unit_tensor(store.slice(start, stop))
            if params is not None:
                images = Augmentation.apply(images, params[start:stop])
            images = prep.model_input(images)
            with autocast(device):
                chunks.append(model.features(images).float())
        parts.append(torch.cat(chunks) if chunks else None)
    model.train(was_training)
    width = next((p.shape[1] for p in parts if p is not None), None)
    if width is None:  # this rank's shard is empty; learn the width from one image
        with autocast(device):
            width = model.features(prep.model_input(to_unit_tensor(store.slice(0, 1)))).shape[1]
        parts = [torch.zeros((0, width), device=device) for _ in parts]
    local = torch.stack(parts)
    return ctx.assemble(local, n, dim=1)


# ------------------------------------------------------------------------------------------------
# Cross-run memo (single process): k-fold cross-validation trains k heads on one frozen backbone over
# subsets of one decode cache. A FeatureMemo handed to each training computes features once for every row of
# the cache array the subsets come from; each run takes its rows. Without one nothing is remembered.


class FeatureMemo:
    """Backbone features remembered across the trainings it is passed to (the last set only: one entry);
    with a `folder`, also on disk, so that later processes (the next cross-validation with another head
    setting) load them instead of running the backbone again."""

    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(folder) if folder is not None else None
        self._entries: dict[str, torch.Tensor] = {}

    def _load(self, key: str) -> torch.Tensor | None:
        if self.folder is None:
            return None
        path = self.folder / f"features-{key}.pt"
        try:
            return torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None
        except Exception as error:  # a damaged file is recomputed
            log.warning("feature memo %s unreadable (%s): recomputing", path, error)
            return None

    def _save(self, key: str, features: torch.Tensor) -> None:
        if self.folder is None:
            return
        try:
            atomic_write(self.folder / f"features-{key}.pt", lambda stream: torch.save(features.cpu(), stream))
        except OSError as error:
            log.warning("cannot write the feature memo in %s: %s", self.folder, error)

    def all_rows(self, key: str, compute, device: torch.device) -> torch.Tensor:
        """The features stored under `key`, else `compute()` (then stored)."""
        if key not in self._entries:
            self._entries.clear()
            features = self._load(key)
            if features is None:
                features = compute()
                self._save(key, features)
            else:
                log.info("loaded backbone features of %d images x %d view(s) from the feature memo",
                         features.shape[1], features.shape[0])
            self._entries[key] = features.to(device)
        return self._entries[key]


def backbone_digest(model: torch.nn.Module) -> str:
    """Hash of every weight and buffer outside the head: equal digests give equal features."""
    digest = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        if not name.startswith("head."):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _memo_key(model, prep: Preprocessing, base, views: int, augmentation: Augmentation | None, seed: int) -> str:
    # tta_hflip is inference-only: it does not change the features the head trains on.
    prep_values = {k: v for k, v in prep.to_dict().items() if k != "tta_hflip"}
    text = json.dumps({"backbone": backbone_digest(model), "rows": str(base.filename), "shape": list(base.shape),
                       "preprocessing": prep_values, "views": views, "seed": seed,
                       "augmentation": augmentation.to_dict() if augmentation is not None and views else None},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def subset_features(model: torch.nn.Module, prep: Preprocessing, rows: Rows, views: int,
                    augmentation: Augmentation | None, seed: int, ctx: DistContext, device: torch.device,
                    batch_size: int = 256, memo: FeatureMemo | None = None) -> torch.Tensor:
    """`extract_features` for `rows`; with a `memo` (one process, rows of a cached memmap) the features of
    all rows of the underlying cache are computed once and reused by later calls."""
    base = rows.base
    filename = getattr(base, "filename", None)
    if memo is None or ctx.world_size > 1 or filename is None:
        return extract_features(model, prep, ImageStore.create(rows, device), views, augmentation, seed, ctx,
                                batch_size)
    every = memo.all_rows(
        _memo_key(model, prep, base, views, augmentation, seed),
        lambda: extract_features(model, prep, ImageStore.create(Rows(base), device), views, augmentation, seed,
                                 ctx, batch_size),
        device)
    return every[:views + 1, torch.as_tensor(rows.index, device=every.device)]
