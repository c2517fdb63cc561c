"""Is the kidney contrast-enhanced? Measured in Hounsfield units inside the model's kidney map, for inputs that
carry HU (DICOM, NIfTI). Every training slice was contrast-enhanced: on an unenhanced scan a kidney is as grey
as muscle and its lesions are hidden, so a study whose kidneys measure like that gets no call.
"""

from __future__ import annotations

import numpy as np

# Enhanced renal parenchyma measures about 100-250 HU (corticomedullary to nephrographic phase), unenhanced about
# 30-40 HU (14 HU median inside the organ labels of the unenhanced TotalSegmentator example, partial volume
# included). The threshold sits between them with room for a map that spills into the fat around the kidney.
ENHANCED_KIDNEY_HU = 80.0
LEAST_PIXELS = 20  # fewer kidney pixels than this on a slice tell nothing


def display_to_hu(view: np.ndarray, level: float, width: float) -> np.ndarray:
    """uint8 display pixels, made from HU through the window (level, width), back to HU (window-clipped)."""
    return (level - width / 2.0) + view.astype(np.float32) / 255.0 * width


def kidney_hu(view: np.ndarray, kidney_probability: np.ndarray, level: float, width: float) -> float | None:
    """Median HU of the pixels the map calls kidney (p > 0.5), on a uint8 view windowed from HU; None when the
    map holds fewer than LEAST_PIXELS of them."""
    inside = kidney_probability > 0.5
    if inside.sum() < LEAST_PIXELS:
        return None
    return float(np.median(display_to_hu(view[inside], level, width)))


def study_enhanced(slice_medians: list[float | None]) -> bool | None:
    """Whether a study's kidneys are enhanced, from its in-scope slices' kidney HU medians; None when no slice
    measured a kidney."""
    measured = [m for m in slice_medians if m is not None]
    if not measured:
        return None
    return float(np.median(measured)) >= ENHANCED_KIDNEY_HU
