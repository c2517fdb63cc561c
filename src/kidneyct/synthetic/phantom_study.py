"""One phantom patient scanned over a whole series, with a tumor on a known run of slices.

Study-level inference needs what the class-folder datasets lack: a series where most slices are
normal and a known contiguous block shows the lesion. The slice spacing is chosen so that the
lesion (a sphere over z in lesion.z +- LESION_HALF_SPAN) covers exactly the requested slices.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kidneyct.synthetic import writers
from kidneyct.synthetic.phantom import render_slice, sample_patient

# Lesion.radius_at is positive for |z - lesion.z| < 1 / 1.6.
LESION_HALF_SPAN = 1.0 / 1.6


@dataclass
class PhantomStudy:
    path: Path  # DICOM series folder or NIfTI volume
    n_slices: int
    lesion_slices: list[int]  # slice indices (reading order) whose lesion mask is not empty
    rows: list[dict]  # manifest rows, one per slice


def study_positions(n_slices: int, first: int, last: int) -> tuple[np.ndarray, float]:
    """Slice positions centred on the series and the lesion centre that puts slices first..last
    (inclusive) inside the lesion, with half a spacing to spare at both ends."""
    if not 0 <= first <= last < n_slices:
        raise ValueError(f"lesion slices {first}..{last} do not fit a series of {n_slices}")
    spacing = 2 * LESION_HALF_SPAN / (last - first + 1)
    positions = (np.arange(n_slices) - (n_slices - 1) / 2) * spacing
    return positions, float(positions[first:last + 1].mean())


def render_study(seed: int, size: int, n_slices: int, first: int, last: int, lesion: str = "Tumor"):
    """[(HU image, lesion mask)] over the series, and the slice positions."""
    rng = np.random.default_rng(seed)
    patient = sample_patient(rng, size, lesion)
    positions, centre = study_positions(n_slices, first, last)
    patient.lesion = dataclasses.replace(patient.lesion, z=centre)
    return [render_slice(patient, float(z)) for z in positions], positions


def write_study(out: str | Path, fmt: str = "dicom", seed: int = 0, size: int = 128, n_slices: int = 16,
                lesion_slices: tuple[int, int] = (5, 10), lesion: str = "Tumor") -> PhantomStudy:
    """Write one study as a DICOM series (`out/<id>/IM-*.dcm`) or a NIfTI volume (`out/<id>.nii.gz`),
    masks beside as the dataset writers do. Returns where it is and which slices show the lesion."""
    if fmt not in ("dicom", "nifti"):
        raise ValueError(f"a study is written as 'dicom' or 'nifti', not {fmt!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    slices, positions = render_study(seed, size, n_slices, *lesion_slices, lesion=lesion)
    series_id = f"study-{lesion.lower()}-{seed:04d}"
    rows = writers.WRITERS[fmt](out, lesion, series_id, 0, slices, positions, seed)
    path = out / series_id if fmt == "dicom" else out / f"{series_id}.nii.gz"
    lesion_found = [i for i, (_, mask) in enumerate(slices) if mask.any()]
    return PhantomStudy(path, n_slices, lesion_found, rows)
