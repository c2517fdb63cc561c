"""`StudySettings`: the study rule, the scope gate's settings and the statistics of the training slices, as a
checkpoint stores them; and `fit_study_settings`, which fits them from the training and validation slices'
model inputs and penultimate features (computed by the caller, who holds the model)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from kidneyct.records import DictRecord
from kidneyct.study.rule import DEFAULT_RULE, LEGACY_RULE, StudyRule
from kidneyct.study.scope_stats import FeatureDistance, IntensityProfile, ScopeSettings

log = logging.getLogger(__name__)


@dataclass
class StudySettings(DictRecord):
    """How inference judges a whole study with this model.

    features: the penultimate-feature statistics single slices are held to (None: an ensemble, which has no
    single penultimate layer, or a model without validation slices); intensity: the training slices' intensity
    profile behind the intensity warnings (None: no body found in any training slice)."""

    rule: StudyRule = DEFAULT_RULE
    scope: ScopeSettings = field(default_factory=ScopeSettings)
    features: FeatureDistance | None = None
    intensity: IntensityProfile | None = None


# Checkpoints written before study settings were recorded were used with the top-3 mean and no statistics.
LEGACY_SETTINGS = StudySettings(rule=LEGACY_RULE)


def fit_study_settings(train_images: np.ndarray, val_images: np.ndarray, train_features: np.ndarray | None,
                       val_features: np.ndarray | None) -> StudySettings:
    """The default rule and scope settings with the statistics of these training and validation slices.

    Args:
        train_images, val_images: uint8 model inputs [N, S, S] of the two splits.
        train_features, val_features: the model's penultimate features of the same slices [N, D]; None when the
            model has no single penultimate layer.

    Returns:
        StudySettings; its feature statistics need features and at least two training and one validation slice.
    """
    features = None
    if train_features is not None and val_features is not None and len(val_features) and len(train_features) > 1:
        features = FeatureDistance.fit(train_features, val_features)
        log.info("scope: feature distance threshold %.2f accepts %.0f%% of %d validation slices", features.threshold,
                 100 * features.acceptance, len(val_features))
    return StudySettings(DEFAULT_RULE, ScopeSettings(), features, IntensityProfile.fit(train_images, val_images))
