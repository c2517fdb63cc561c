from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class CTSlice:
    """One 2-D slice as read from disk, before any preprocessing.

    ``pixels`` holds Hounsfield units when ``hu`` is true (DICOM CT, NIfTI) and display intensities
    scaled to [0, 1] otherwise (JPG/PNG exports are already windowed by whoever exported them).
    """

    pixels: np.ndarray
    hu: bool
    source: str
    index: int | None = None  # slice index within a series or volume, in reading order
    series: str | None = None  # series identity when the format carries one
    modality: str | None = None
    position: float | None = None  # mm along the slice normal (series and volumes), for the slice spacing
    warnings: tuple[str, ...] = ()  # what the reader could not check (a DICOM without Modality)
    spacing: tuple[float, float] | None = None  # mm between pixel centres (rows, columns), when the file says
