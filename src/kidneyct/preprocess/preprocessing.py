"""The one definition of preprocessing, shared by training, evaluation, prediction and export.

Flow: CTSlice -> window (HU only) -> [0, 1] -> (body crop or kidney crop, optional) -> pad to square -> resize -> uint8
(the cached form) -> float [0, 1] -> (augment, training only) -> standardise with the model's mean/std.
A Preprocessing is stored in every checkpoint, so inference rebuilds it from the checkpoint alone.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from typing import TYPE_CHECKING

import numpy as np

from kidneyct.io.slices import CTSlice
from kidneyct.preprocess.geometry import Geometry, slice_geometry
from kidneyct.preprocess.window import apply_window
from kidneyct.records import DictRecord

if TYPE_CHECKING:  # torch is imported where tensors are made: reading and resizing slices needs none
    import torch

# The fields that shape the cached uint8 image. mean/std are applied on the fly and tta_hflip at inference,
# so preprocessings that differ only there share one decoded form (and one decode cache).
CACHED_FIELDS = ("image_size", "window_level", "window_width", "body_crop", "kidney_crop")


@dataclass(frozen=True)
class Preprocessing(DictRecord):
    image_size: int = 224
    window_level: float = 40.0  # abdomen window, applied to Hounsfield-unit inputs only
    window_width: float = 400.0
    mean: float = 0.0  # standardisation after scaling to [0, 1]; models declare their own
    std: float = 1.0
    body_crop: bool = False  # crop to the body and blank the rest before resizing (part of the cached form)
    tta_hflip: bool = False  # inference: mean logits of the slice and its left-right mirror image
    body_norm: bool = False  # each slice's body scaled to a fixed intensity mean and sd before standardising
    kidney_crop: bool = False  # crop to the square around both kidney regions (part of the cached form)

    def __post_init__(self):
        if self.image_size < 16:
            raise ValueError(f"image_size must be at least 16, got {self.image_size}")
        if self.window_width <= 0:
            raise ValueError(f"window width must be positive, got {self.window_width}")
        if self.std <= 0:
            raise ValueError(f"std must be positive, got {self.std}")

    def to_unit(self, ct_slice: CTSlice) -> np.ndarray:
        """Display intensities in [0, 1]: HU through the window, exported images as they are."""
        if ct_slice.hu:
            return apply_window(ct_slice.pixels, self.window_level, self.window_width)
        return np.clip(ct_slice.pixels, 0.0, 1.0, dtype=np.float32)  # one pass: cast and clip together

    def cached_form(self) -> dict:
        """The values of CACHED_FIELDS: two preprocessings with equal cached forms decode to equal images."""
        return {name: getattr(self, name) for name in CACHED_FIELDS}

    def geometry(self, unit: np.ndarray) -> Geometry:
        """The crop, padding and resize of this slice's cached form (see kidneyct.preprocess.geometry)."""
        return slice_geometry(unit, self.image_size, self.body_crop, self.kidney_crop)

    def to_uint8(self, ct_slice: CTSlice) -> np.ndarray:
        """The cached, model-independent form: image_size x image_size uint8."""
        unit = self.to_unit(ct_slice)
        return self.geometry(unit).image(unit)

    def to_uint8_with_mask(self, ct_slice: CTSlice, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The cached form of a slice and of its label map (uint8, the slice's grid), moved alike."""
        unit = self.to_unit(ct_slice)
        geometry = self.geometry(unit)
        return geometry.image(unit), geometry.mask(labels)

    def standardise(self, unit: torch.Tensor) -> torch.Tensor:
        """[B, 1, H, W] in [0, 1] to the model's scale: (each slice's body normalised, then) (x - mean) / std."""
        if self.body_norm:
            unit = normalise_body(unit)
        return (unit - self.mean) / self.std

    def model_input(self, unit: torch.Tensor) -> torch.Tensor:
        """Images [B, 1, H, W] in [0, 1] (augmented or not) as the PyTorch models take them: standardised and
        channels_last, the layout their convolutions run fastest in (oneDNN on CPUs, cuDNN on GPUs)."""
        import torch

        return self.standardise(unit).contiguous(memory_format=torch.channels_last)

    def standardised(self, images: np.ndarray) -> np.ndarray:
        """uint8 [B, H, W] to the model's float32 input [B, 1, H, W] in numpy: `batch_to_tensor` without torch,
        for runtimes that need none (onnxruntime)."""
        unit = images[:, None].astype(np.float32) / np.float32(255.0)
        if self.body_norm:
            unit = normalise_body_array(unit)
        return np.ascontiguousarray((unit - np.float32(self.mean)) / np.float32(self.std), dtype=np.float32)

    def batch_to_tensor(self, batch: torch.Tensor | np.ndarray, device=None) -> torch.Tensor:
        """uint8 [B, H, W] (or [B, 1, H, W]) to the model's float input [B, 1, H, W]."""
        return self.standardise(to_unit_tensor(batch, device))


def to_unit_tensor(batch: torch.Tensor | np.ndarray, device=None) -> torch.Tensor:
    import torch

    tensor = torch.as_tensor(batch, device=device)
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(1)
    return tensor.float().div_(255.0)


BODY_LEVEL = 0.03  # display intensity above which a pixel is body, not air (the body crop's threshold)
BODY_MEAN, BODY_SD = 0.5, 0.2


def normalise_body(unit: torch.Tensor, level: float = BODY_LEVEL) -> torch.Tensor:
    """Each slice's body pixels (above `level`) mapped to median 0.5 and a robust sd (interquartile range /
    1.349) of 0.2, air left at 0: an export's window level and width (an affine map of the unclipped
    intensities) no longer set the image's levels, while a mass's contrast against its kidney, relative to the
    body's spread, is kept. Robust statistics, because which gas pixels clear `level` depends on the window."""
    import torch

    body = unit > level
    values = torch.where(body, unit, torch.full_like(unit, float("nan"))).flatten(1).float()
    quartiles = torch.nanquantile(values, torch.tensor([0.25, 0.5, 0.75], device=unit.device), dim=1)  # [3, B]
    shape = (-1,) + (1,) * (unit.dim() - 1)
    median = torch.nan_to_num(quartiles[1], nan=0.5).view(shape).to(unit.dtype)
    spread = torch.nan_to_num((quartiles[2] - quartiles[0]) / 1.349, nan=1.0).clamp_min(1e-3).view(shape).to(unit.dtype)
    return torch.where(body, (unit - median) / spread * BODY_SD + BODY_MEAN, torch.zeros_like(unit))


def normalise_body_array(unit: np.ndarray, level: float = BODY_LEVEL) -> np.ndarray:
    """`normalise_body` in numpy (the same quantiles, linearly interpolated): [B, 1, H, W] in [0, 1]."""
    body = unit > level
    values = np.where(body, unit, np.nan).reshape(len(unit), -1).astype(np.float32)
    with warnings.catch_warnings():  # a slice without body pixels: NaN statistics, replaced below
        warnings.simplefilter("ignore", RuntimeWarning)
        low, median, high = np.nanquantile(values, [0.25, 0.5, 0.75], axis=1) if values.size else np.zeros((3, 0))
    shape = (-1,) + (1,) * (unit.ndim - 1)
    median = np.nan_to_num(median, nan=0.5).reshape(shape).astype(np.float32)
    spread = np.maximum(np.nan_to_num((high - low) / 1.349, nan=1.0), 1e-3).reshape(shape).astype(np.float32)
    return np.where(body, (unit - median) / spread * BODY_SD + BODY_MEAN, 0.0).astype(np.float32)
