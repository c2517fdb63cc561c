"""What inference needs to judge a whole study, fitted at the end of training and stored in the checkpoint:
the study rule, the scope gate's feature statistics (penultimate features of the training slices, threshold
on validation) and the intensity profile of the training slices.

`record_study_settings` is called per checkpoint from `train._finish` (each checkpoint's own weights);
`fit_study_settings` adds them to a checkpoint written before they existed, from its split.csv."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from kidneyct.data.cache import CacheSettings
from kidneyct.data.catalogue import catalogue_of
from kidneyct.data.decode import decode_samples
from kidneyct.data.sources import run_sources, split_roots
from kidneyct.data.splits import read_split_csv
from kidneyct.evaluation.novelty import FeatureDistance, IntensityProfile, ScopeSettings
from kidneyct.evaluation.study import DEFAULT_RULE
from kidneyct.models.checkpoint import atomic_save, load_model, read_checkpoint
from kidneyct.models.forward import penultimate_features
from kidneyct.preprocess import Preprocessing

log = logging.getLogger(__name__)

MAX_FEATURE_ROWS = 4000  # training slices the feature statistics are fitted on (drawn at random beyond it)


def _sample(images, limit: int, seed: int = 0) -> np.ndarray:
    index = np.sort(np.random.default_rng(seed).permutation(len(images))[:limit])
    return images[index]


def study_settings(model: torch.nn.Module, prep: Preprocessing, train_images, val_images,
                   device: str | torch.device = "cpu", batch_size: int = 64) -> dict:
    """The checkpoint entries 'study_rule', 'scope' and 'intensity' for `model`'s current weights.

    Args:
        model: the trained model (its weights as stored in the checkpoint).
        prep: its preprocessing.
        train_images, val_images: uint8 model inputs [N, S, S] of the training and validation splits.
        device, batch_size: where and how the features are computed.

    Returns:
        {"study_rule", "scope": {"settings", "features"}, "intensity"}; features and intensity are None when
        they cannot be fitted (an ensemble has no single penultimate layer; no validation slices).
    """
    train = _sample(train_images, MAX_FEATURE_ROWS)
    val = _sample(val_images, MAX_FEATURE_ROWS)
    features = None
    train_features = penultimate_features(model, prep, train, batch_size, device)
    if train_features is not None and len(val) and len(train) > 1:
        val_features = penultimate_features(model, prep, val, batch_size, device)
        fitted = FeatureDistance.fit(train_features, val_features)
        features = fitted.to_dict()
        log.info("scope: feature distance threshold %.2f accepts %.0f%% of %d validation slices", fitted.threshold,
                 100 * fitted.acceptance, len(val))
    intensity = IntensityProfile.fit(train, val)
    return {"study_rule": DEFAULT_RULE.to_dict(),
            "scope": {"settings": ScopeSettings().to_dict(), "features": features},
            "intensity": intensity.to_dict() if intensity is not None else None}


def record_study_settings(path: str | Path, model: torch.nn.Module, prep: Preprocessing, train_images, val_images,
                          device: str | torch.device = "cpu", batch_size: int = 64) -> dict:
    """Load the weights stored in `path` into `model`, fit the study settings for them and write them into
    the checkpoint. Returns the updated payload."""
    payload = read_checkpoint(path)
    model.load_state_dict(payload["state_dict"])
    payload.update(study_settings(model, prep, train_images, val_images, device, batch_size))
    atomic_save(payload, path)
    return payload


def fit_study_settings(checkpoint: str | Path, out: str | Path, data: str | Path | None = None,
                       device: str = "cpu") -> dict:
    """A copy of `checkpoint` at `out` with the study settings fitted on its own training and validation
    splits (split.csv beside it, images under `data` or the sources it was trained on).

    Returns:
        The payload written to `out`.
    """
    checkpoint = Path(checkpoint)
    loaded = load_model(checkpoint, device)
    stored = loaded.payload.get("data") or {}
    split_csv = checkpoint.parent / stored.get("split_csv", "split.csv")
    if not split_csv.is_file():
        raise FileNotFoundError(f"{split_csv}: the checkpoint's split is needed to fit its study settings")
    sources = run_sources(loaded.payload, data)
    by_split = read_split_csv(split_csv, split_roots(sources), loaded.classes)
    superset = catalogue_of(sources, loaded.classes).samples  # whose decode cache the training run left
    images = {name: decode_samples(by_split[name], loaded.preprocessing, progress=False, cache=CacheSettings(),
                                   superset=superset).images for name in ("train", "val")}
    payload = dict(loaded.payload)
    payload.update(study_settings(loaded.model, loaded.preprocessing, images["train"], images["val"], device))
    atomic_save(payload, out)
    return payload
