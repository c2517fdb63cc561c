"""One validation of what every reader returns: a 2-D slice of finite values, big enough to be a CT slice,
and finite rescale values. Readers call it before returning, so no format skips a check."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from kidneyct.errors import ImageReadError
from kidneyct.io.slices import CTSlice

MIN_SIDE = 8  # pixels: below this no model input (resized from it) holds anatomy


def check_rescale(path: str | Path, slope, intercept) -> tuple[float, float]:
    """(slope, intercept) as floats; an ImageReadError when either is not a finite number or the slope is 0.

    Args:
        path: the file, named in the error.
        slope, intercept: stored value -> HU (DICOM RescaleSlope/Intercept, NIfTI scl_slope/scl_inter).
    """
    try:
        slope, intercept = float(slope), float(intercept)
    except (TypeError, ValueError):
        raise ImageReadError(path, f"rescale slope/intercept {slope!r}/{intercept!r} are not numbers") from None
    if not (math.isfinite(slope) and math.isfinite(intercept)) or slope == 0:
        raise ImageReadError(path, f"rescale slope/intercept {slope:g}/{intercept:g} must be finite (slope not 0)")
    return slope, intercept


def check_slice(ct_slice: CTSlice) -> CTSlice:
    """The slice itself, once it is 2-D, at least MIN_SIDE pixels a side and finite everywhere.

    Args:
        ct_slice: a slice as a reader made it.

    Returns:
        The same slice.
    """
    pixels, where = ct_slice.pixels, _where(ct_slice)
    if pixels.ndim != 2:
        raise ImageReadError(ct_slice.source, f"expected a 2-D slice{where}, got pixels of shape {pixels.shape}")
    if min(pixels.shape) < MIN_SIDE:
        raise ImageReadError(ct_slice.source, f"slice{where} of {pixels.shape[1]}x{pixels.shape[0]} pixels is "
                                              f"too small to be a CT slice (at least {MIN_SIDE} a side)")
    if not np.isfinite(pixels).all():
        raise ImageReadError(ct_slice.source, f"slice{where} holds non-finite values (NaN or infinity)")
    return ct_slice


def _where(ct_slice: CTSlice) -> str:
    return "" if ct_slice.index is None else f" {ct_slice.index}"
