"""Display windows: Hounsfield units to [0, 1] (and to uint8) through a window level and width."""

from __future__ import annotations

import numpy as np


def apply_window(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    """Hounsfield units to [0, 1] through a display window (values outside are clipped)."""
    low = level - width / 2.0
    return np.clip((hu.astype(np.float32) - low) / float(width), 0.0, 1.0)


def window_to_uint8(hu: np.ndarray, level: float = 40.0, width: float = 400.0) -> np.ndarray:
    """HU to a uint8 display image (the abdomen window by default), as phantom PNGs are written."""
    return np.rint(apply_window(hu, level, width) * 255).astype(np.uint8)
