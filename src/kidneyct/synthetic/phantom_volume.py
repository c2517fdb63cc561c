"""Phantom volumes from the pelvis to the liver, with per-slice truth of where a kidney shows.

A radiologist's series runs far beyond the kidneys: pelvis below (iliac bones, bladder), liver and spleen
above. These volumes give the scope gate something to be tested on: slices at heights (mm, 0 at the kidneys'
centre, positive upwards) from below the kidneys to above them. Kidney-level slices are `render_slice`
slices with the kidneys tapered to nothing at their poles (a kidney's cut shrinks towards each pole); above
the kidneys the same patient is drawn without them (the liver and spleen at full size), below them the pelvis.
Slices run inferior first, as kidneyct reads DICOM series and NIfTI volumes. Existing phantoms are untouched:
this module only calls phantom.py's drawing steps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kidneyct.synthetic import writers
from kidneyct.synthetic.phantom import (Ellipse, Patient, _draw_body_wall, _draw_bowel, _draw_spine, _paint, _scan,
                                        render_slice, sample_patient)

KIDNEY_LENGTH_MM = 110.0  # pole to pole, an adult kidney
RENDER_KIDNEY_SCALE = 0.55  # render_slice's own kidney shrinkage over z (its `kidney_scale`)


@dataclass
class PhantomVolume:
    path: Path  # DICOM series folder or NIfTI volume
    heights_mm: list[float]  # per slice, inferior first
    kidney: list[bool]  # per slice: does it show a kidney
    lesion_slices: list[int]  # slices whose lesion mask is not empty


def _kidney_scale(height: float, length: float) -> float:
    """How large the kidneys' cut is at `height` relative to their widest: an ellipsoid's profile."""
    return float(np.sqrt(max(1.0 - (2.0 * height / length) ** 2, 0.0)))


def _kidney_level(p: Patient, height: float, length: float) -> tuple[np.ndarray, np.ndarray, bool]:
    z = -2.0 * height / length  # render_slice's z: negative upwards (its liver grows towards negative z)
    own = float(np.sqrt(max(1.0 - (z * RENDER_KIDNEY_SCALE) ** 2, 0.15)))
    scale = _kidney_scale(height, length)
    tapered = dataclasses.replace(p, kidneys=[k.scaled(scale / own) for k in p.kidneys])
    hu, mask = render_slice(tapered, z)
    shows = scale * min(min(k.a, k.b) for k in p.kidneys) >= 0.5  # at least a pixel of kidney
    return hu, mask, shows


def _upper_level(p: Patient, height: float, length: float) -> np.ndarray:
    z = -2.0 * height / length
    return render_slice(dataclasses.replace(p, kidneys=[], lesion=None), z)[0]


def _pelvis_level(p: Patient, height: float, length: float) -> np.ndarray:
    """Below the kidneys: body wall, bowel, the spine and psoas, the iliac wings beside it and the bladder,
    which fills the front of the pelvis the lower the cut."""
    s, depth = p.size, (-height - length / 2) / length  # 0 at the lower poles, growing downwards
    rng = np.random.default_rng(p.seed + int(round(height * 10)) + 11)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    hu = np.full((s, s), -1000.0, np.float32)
    inside, cavity = _draw_body_wall(hu, p, xx, yy)
    _draw_bowel(hu, p, 1.0 + depth, cavity, xx, yy)
    _draw_spine(hu, p, inside, xx, yy, rng)
    sx, sy, sr = p.spine
    for side in (-1, 1):
        # The iliac wing: a long thin plate of bone running forwards and outwards from the sacroiliac joint,
        # with the iliacus muscle on its inner face; lower down it moves outwards, towards the hip.
        out = sr * (3.2 + 2.5 * min(depth, 0.6))
        wing = Ellipse(sx + side * out, sy - sr * 0.6, sr * 3.4, sr * 0.42, -side * 0.75)
        _paint(hu, wing.scaled(1.9), p.phase_hu["muscle"], xx, yy, where=cavity & (side * (xx - wing.cx) < 0))
        _paint(hu, wing, 700.0, xx, yy, where=inside)
        _paint(hu, wing, 280.0, xx, yy, within=0.3, where=inside)
        _paint(hu, Ellipse(sx + side * sr * 1.4, sy - sr * 1.8, sr * 0.35, sr * 0.35), p.phase_hu["vessel"], xx, yy)
    grow = float(np.clip(depth * 2.5, 0.25, 1.0))
    bladder = Ellipse(p.body.cx, p.body.cy - p.body.b * 0.25, p.body.a * 0.3 * grow, p.body.b * 0.35 * grow)
    _paint(hu, bladder, 8.0, xx, yy, where=cavity)
    return _scan(hu, p, xx, yy, rng)


def render_level(p: Patient, height: float, length: float = KIDNEY_LENGTH_MM) -> tuple[np.ndarray, np.ndarray, bool]:
    """One axial slice at `height` mm (0: the kidneys' centre, positive upwards).

    Returns:
        (HU image, lesion mask, whether a kidney shows on it).
    """
    if abs(height) < length / 2:
        return _kidney_level(p, height, length)
    empty = np.zeros((p.size, p.size), bool)
    if height > 0:
        return _upper_level(p, height, length), empty, False
    return _pelvis_level(p, height, length), empty, False


def volume_heights(below_mm: float = 120.0, above_mm: float = 110.0,
                   spacing_mm: float = writers.SLICE_THICKNESS_MM) -> np.ndarray:
    """Slice heights from `below_mm` under the kidneys' centre to `above_mm` over it, inferior first."""
    return np.arange(-below_mm, above_mm + 1e-6, spacing_mm)


def render_volume(seed: int, size: int = 128, lesion: str | None = None, heights=None):
    """A patient scanned from the pelvis to the liver: ([(HU, lesion mask)], per-slice kidney truth, heights)."""
    patient = sample_patient(np.random.default_rng(seed), size, lesion)
    heights = volume_heights() if heights is None else np.asarray(heights, float)
    rendered = [render_level(patient, float(h)) for h in heights]
    return [(hu, mask) for hu, mask, _ in rendered], [shows for *_, shows in rendered], heights


def write_volume(out: str | Path, fmt: str = "dicom", seed: int = 0, size: int = 128, lesion: str | None = None,
                 below_mm: float = 120.0, above_mm: float = 110.0) -> PhantomVolume:
    """Write one pelvis-to-liver volume as a DICOM series or a NIfTI volume (5 mm slices, the writers'
    spacing), masks beside. Returns where it is and the per-slice truth."""
    if fmt not in ("dicom", "nifti"):
        raise ValueError(f"a volume is written as 'dicom' or 'nifti', not {fmt!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    slices, kidney, heights = render_volume(seed, size, lesion, volume_heights(below_mm, above_mm))
    name = f"volume-{(lesion or 'normal').lower()}-{seed:04d}"
    writers.WRITERS[fmt](out, lesion or "Normal", name, 0, slices, heights, seed)
    path = out / name if fmt == "dicom" else out / f"{name}.nii.gz"
    return PhantomVolume(path, [float(h) for h in heights], kidney,
                         [i for i, (_, mask) in enumerate(slices) if mask.any()])
