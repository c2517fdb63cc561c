"""From a read slice to the model's input: window, body crop, pad and resize to the cached uint8 form, then
(training only) augmentation and the model's standardisation. `Preprocessing` is the one definition, stored
in every checkpoint.

Importing this package imports no torch (an ONNX prediction never needs it): the names that work on tensors
(augmentation, batched resizing, the float conversion) load their modules, and torch, when first used."""

import importlib

from kidneyct.preprocess.body import body_mask, crop_box, crop_to_body
from kidneyct.preprocess.morphology import disk_opening, largest_component
from kidneyct.preprocess.preprocessing import CACHED_FIELDS, Preprocessing, to_unit_tensor
from kidneyct.preprocess.resize import pad_to_square, resize_batch_to_uint8, resize_to_uint8
from kidneyct.preprocess.window import apply_window, window_to_uint8

_ON_TENSORS = {"AUGMENTATIONS": "kidneyct.preprocess.augment", "Augmentation": "kidneyct.preprocess.augment"}


def __getattr__(name: str):
    if name in _ON_TENSORS:
        return getattr(importlib.import_module(_ON_TENSORS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AUGMENTATIONS", "Augmentation", "CACHED_FIELDS", "Preprocessing", "apply_window", "body_mask", "crop_box",
    "crop_to_body", "disk_opening", "largest_component", "pad_to_square", "resize_batch_to_uint8",
    "resize_to_uint8", "to_unit_tensor", "window_to_uint8",
]
