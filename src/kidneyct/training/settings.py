"""What a TrainConfig (plain data, kidneyct.config) means in objects: its preprocessing, model configuration,
augmentation policy, split fractions and decode-cache settings."""

from __future__ import annotations

import math
from dataclasses import replace

from kidneyct.config import TrainConfig
from kidneyct.data.cache import CacheSettings
from kidneyct.data.sources import Source, resolve_sources
from kidneyct.data.splits import SplitFractions
from kidneyct.models import ModelConfig, get_spec
from kidneyct.preprocess import AUGMENTATIONS, Augmentation, Preprocessing
from kidneyct.preprocess.acquisition import ACQUISITIONS, AcquisitionAugmentation, families
from kidneyct.preprocess.zoom import Zoom
from kidneyct.training.segmenter import SegmenterSettings
from kidneyct.training.zoom_batches import ZoomAugmentation


def split_fractions(config: TrainConfig) -> SplitFractions:
    return SplitFractions(1.0 - config.val_fraction - config.test_fraction, config.val_fraction, config.test_fraction)


def model_config(config: TrainConfig, num_classes: int) -> ModelConfig:
    spec = get_spec(config.model)
    freeze = None if not config.finetune else False
    return ModelConfig(config.model, num_classes, config.image_size or spec.image_size, config.pretrained,
                       freeze, config.dropout).resolved()


def sources(config: TrainConfig) -> list[Source]:
    """The run's sources: each --data folder, then those of the --sources file."""
    return resolve_sources(config.data, config.sources)


def cache_settings(config: TrainConfig) -> CacheSettings:
    return CacheSettings(config.cache, config.cache_dir)


def preprocessing(config: TrainConfig) -> Preprocessing:
    spec = get_spec(config.model)
    if spec.maps:  # the body view both looks cut from (the overview shrinks it); the model standardises each crop
        return Preprocessing(round(config.view_scale * (config.image_size or spec.image_size)), config.window_level,
                             config.window_width, spec.mean, spec.std, body_crop=True)
    return Preprocessing(config.image_size or spec.image_size, config.window_level, config.window_width,
                         spec.mean, spec.std, body_crop=config.body_crop, tta_hflip=config.tta,
                         body_norm=config.body_norm, kidney_crop=config.kidney_crop)


def augmentation_policy(config: TrainConfig) -> Augmentation | None:
    if not config.augment:
        return None
    if config.augmentation not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {config.augmentation!r}; choose from {sorted(AUGMENTATIONS)}")
    policy = AUGMENTATIONS[config.augmentation]
    return policy if config.translate is None else replace(policy, translate=config.translate)


def acquisition_policy(config: TrainConfig) -> AcquisitionAugmentation | None:
    """The acquisition augmentation: a preset name ('mild', 'strong'), or 'PRESET:family+family' for only
    those families of the preset (e.g. 'strong:window+gamma'); None when off."""
    if not config.augment or config.acquisition in ("none", "", None):
        return None
    preset, _, names = config.acquisition.partition(":")
    if preset not in ACQUISITIONS:
        raise ValueError(f"unknown acquisition preset {preset!r}; choose from {sorted(ACQUISITIONS)}")
    return families(names.split("+"), preset) if names else ACQUISITIONS[preset]


def learning_rate(config: TrainConfig) -> float:
    """The AdamW rate for `config.batch_size`: `lr` is given for `lr_batch` images per step and scales with the
    square root of the batch ratio. For Adam-type optimisers the square-root rule keeps the noise of the
    updates, and so the trajectory, close across batch sizes (Malladi et al., NeurIPS 2022, "On the SDEs and
    scaling rules for adaptive gradient algorithms"); the linear rule of SGD overshoots them. The warm-up
    stays fixed in epochs, so a larger batch (fewer steps) still warms up over the same data."""
    return config.lr * math.sqrt(config.batch_size / config.lr_batch)


def segmenter_settings(config: TrainConfig) -> SegmenterSettings:
    """How a segmenting model trains: its work size, the unenhanced-kidney and synthetic-tumor shares, the
    zoom's midline band and the mirror TTA from `config`, the rest the measured defaults of SegmenterSettings."""
    spec = get_spec(config.model)
    augmentation = (ZoomAugmentation(unenhanced=config.unenhanced, synthetic_tumors=config.synthetic_lesions,
                                     replacing_tumors=config.replacing_tumors, enhancing_tumors=config.enhancing_tumors,
                                     pasted_tumors=config.pasted_tumors, pasted_inside=config.pasted_inside)
                    if config.augment else None)
    return SegmenterSettings(work_size=config.image_size or spec.image_size, augmentation=augmentation,
                             zoom=Zoom(midline=config.midline_band, midline_centre=config.midline_centre),
                             mirror=config.tta, weight_average=config.weight_average)
