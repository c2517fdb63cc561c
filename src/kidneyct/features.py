"""Frozen-backbone feature cache: with a frozen backbone (eval mode, no gradients) the features of an
image never change, so they are computed once (plus a fixed number of augmented views) and only the
head trains, on feature vectors: one forward pass over the data instead of one per epoch.

Each epoch gives every image one of its V = 1 + views stored views at random; a run with fresh
augmentation every epoch sees more variety, which is the trade for the speed. The model keeps its
backbone, so checkpoints hold the full network and evaluate/predict run on images as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from pathlib import Path

import torch

from kidneyct.atomic import atomic_write
from kidneyct.data.rows import Rows
from kidneyct.data.transforms import Augmentation, Preprocessing, to_unit_tensor
from kidneyct.distributed import DistContext
from kidneyct.engine import ImageStore
from kidneyct.runtime import autocast

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
            images = prep.standardise(images).contiguous(memory_format=torch.channels_last)
            with autocast(device):
                chunks.append(model.features(images).float())
        parts.append(torch.cat(chunks) if chunks else None)
    model.train(was_training)
    width = next((p.shape[1] for p in parts if p is not None), None)
    if width is None:  # this rank's shard is empty; learn the width from one image
        with autocast(device):
            width = model.features(prep.standardise(to_unit_tensor(store.slice(0, 1)))).shape[1]
        parts = [torch.zeros((0, width), device=device) for _ in parts]
    local = torch.stack(parts)
    return ctx.assemble(local, n, dim=1)


# ------------------------------------------------------------------------------------------------
# Cross-run memo (opt-in, single process): k-fold cross-validation trains k heads on one frozen backbone
# over subsets of one decode cache. Inside `feature_memo()`, features are computed once for every row of
# the cache array the subset comes from and each run takes its rows; outside it nothing is remembered.

_memo: dict | None = None
_memo_folder: Path | None = None


@contextlib.contextmanager
def feature_memo(folder: str | Path | None = None):
    """Remember backbone features across trainings in this block (the last set only: one entry); with a
    `folder`, also on disk, so that later processes (the next cross-validation with another head setting)
    load them instead of running the backbone again."""
    global _memo, _memo_folder
    previous = (_memo, _memo_folder)
    _memo, _memo_folder = {}, (Path(folder) if folder is not None else None)
    try:
        yield
    finally:
        _memo, _memo_folder = previous


def feature_memo_active() -> bool:
    return _memo is not None


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


def _load_memo(key: str) -> torch.Tensor | None:
    if _memo_folder is None:
        return None
    path = _memo_folder / f"features-{key}.pt"
    try:
        return torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None
    except Exception as error:  # a damaged file is recomputed
        log.warning("feature memo %s unreadable (%s): recomputing", path, error)
        return None


def _save_memo(key: str, features: torch.Tensor) -> None:
    if _memo_folder is None:
        return
    try:
        atomic_write(_memo_folder / f"features-{key}.pt", lambda stream: torch.save(features.cpu(), stream))
    except OSError as error:
        log.warning("cannot write the feature memo in %s: %s", _memo_folder, error)


def subset_features(model: torch.nn.Module, prep: Preprocessing, rows: Rows, views: int,
                    augmentation: Augmentation | None, seed: int, ctx: DistContext, device: torch.device,
                    batch_size: int = 256) -> torch.Tensor:
    """`extract_features` for `rows`; inside `feature_memo()` (one process, rows of a cached memmap) the
    features of all rows of the underlying cache are computed once and reused by later calls."""
    base = rows.base
    filename = getattr(base, "filename", None)
    if _memo is None or ctx.world_size > 1 or filename is None:
        return extract_features(model, prep, ImageStore.create(rows, device), views, augmentation, seed, ctx,
                                batch_size)
    key = _memo_key(model, prep, base, views, augmentation, seed)
    if key not in _memo:
        _memo.clear()
        features = _load_memo(key)
        if features is None:
            features = extract_features(model, prep, ImageStore.create(Rows(base), device), views, augmentation,
                                        seed, ctx, batch_size)
            _save_memo(key, features)
        else:
            log.info("loaded backbone features of %d images x %d view(s) from the feature memo",
                     features.shape[1], features.shape[0])
        _memo[key] = features.to(device)
    every = _memo[key]
    return every[:views + 1, torch.as_tensor(rows.index, device=every.device)]
