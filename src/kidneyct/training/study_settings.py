"""The study settings of a trained model (kidneyct.study.settings): the penultimate features of its training and
validation slices, computed here where the model is at hand, fitted into the study rule, scope statistics and
intensity profile that training records in the checkpoint.

`refit_study_settings` adds them to a checkpoint written before they existed, from its split.csv."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from kidneyct.checkpoint import Checkpoint, write_checkpoint
from kidneyct.checkpoint.model import load_model
from kidneyct.data.cache import CacheSettings
from kidneyct.data.catalogue import catalogue_of
from kidneyct.data.decode import decode_samples
from kidneyct.data.sources import run_sources, split_roots
from kidneyct.data.splits import read_split_csv
from kidneyct.models.forward import penultimate_features
from kidneyct.preprocess import Preprocessing
from kidneyct.run_folder import RunFolder
from kidneyct.study.settings import StudySettings, fit_study_settings

MAX_FEATURE_ROWS = 4000  # training slices the feature statistics are fitted on (drawn at random beyond it)


def _sample(images, limit: int, seed: int = 0) -> np.ndarray:
    index = np.sort(np.random.default_rng(seed).permutation(len(images))[:limit])
    return images[index]


def study_settings(model: torch.nn.Module, prep: Preprocessing, train_images, val_images,
                   device: str | torch.device = "cpu", batch_size: int = 64, features: bool = True) -> StudySettings:
    """The study settings for `model`'s current weights.

    Args:
        model: the trained model (its weights as they will be stored in the checkpoint).
        prep: its preprocessing.
        train_images, val_images: uint8 model inputs [N, S, S] of the training and validation splits.
        device, batch_size: where and how the features are computed.
        features: fit the penultimate-feature statistics (not for a segmenting model, whose kidney map is its
            scope gate).

    Returns:
        StudySettings; its feature statistics and intensity profile are None when they cannot be fitted (an
        ensemble has no single penultimate layer; no validation slices).
    """
    train = _sample(train_images, MAX_FEATURE_ROWS)
    val = _sample(val_images, MAX_FEATURE_ROWS)
    train_features = penultimate_features(model, prep, train, batch_size, device) if features else None
    val_features = penultimate_features(model, prep, val, batch_size, device) if train_features is not None else None
    return fit_study_settings(train, val, train_features, val_features)


def refit_study_settings(checkpoint: str | Path, out: str | Path, data: str | Path | None = None,
                         device: str = "cpu") -> Checkpoint:
    """A copy of `checkpoint` at `out` with the study settings fitted on its own training and validation
    splits (split.csv beside it, images under `data` or the sources it was trained on).

    Returns:
        The checkpoint written to `out`.
    """
    checkpoint = Path(checkpoint)
    loaded = load_model(checkpoint, device)
    stored, prep = loaded.checkpoint, loaded.checkpoint.preprocessing
    split_csv = RunFolder.of(checkpoint).path / stored.data.split_csv
    if not split_csv.is_file():
        raise FileNotFoundError(f"{split_csv}: the checkpoint's split is needed to fit its study settings")
    sources = run_sources(stored, data)
    by_split = read_split_csv(split_csv, split_roots(sources), stored.classes)
    superset = catalogue_of(sources, stored.classes).samples  # whose decode cache the training run left
    images = {name: decode_samples(by_split[name], prep, progress=False, cache=CacheSettings(),
                                   superset=superset).images for name in ("train", "val")}
    updated = replace(stored, study=study_settings(loaded.model, prep, images["train"], images["val"], device))
    write_checkpoint(updated, out)
    return updated
