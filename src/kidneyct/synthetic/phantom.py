"""Synthetic abdominal CT phantoms in Hounsfield units, with ground-truth lesion masks.

Each phantom patient has its own anatomy (body size and shape, fat, organ positions, contrast phase,
scanner table, noise) and is scanned as a short series of neighbouring axial slices, so phantom data
carry the same series structure (and the same near-duplicate trap) as real CT exports. Everything that
is not the kidney lesion is drawn independently of the class: table, field of view, contrast phase and
noise tell nothing, and distractors (liver cysts, vascular calcifications, bowel) appear in every
class, so a model has to look at the kidneys.

Everything written here is synthetic and is labelled so in manifests and reports.
"""

from __future__ import annotations

import csv
import json
import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from kidneyct.labels import MASK_CYST, MASK_KIDNEY, MASK_TUMOR
from kidneyct.runtime import progress_bar
from kidneyct.synthetic import writers

LESION_CLASSES = ("Tumor", "Cyst", "Stone")
PHANTOM_CLASSES = ("Normal", "Cyst", "Tumor", "Stone")
AIR, FAT, WATER = -1000.0, -100.0, 0.0
MANIFEST = "phantom.csv"
MASK_LABELS = {"Kidney": MASK_KIDNEY, "Tumor": MASK_TUMOR, "Cyst": MASK_CYST}  # docs/sources.md


@dataclass
class Ellipse:
    cx: float
    cy: float
    a: float  # semi-axis along x before rotation, pixels
    b: float
    angle: float = 0.0  # radians
    wobble: tuple = ()  # (amplitude, frequency, phase) triples: irregular outlines

    def r2(self, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
        """Normalised squared radius: <= 1 inside."""
        dx, dy = xx - self.cx, yy - self.cy
        cos, sin = np.cos(self.angle), np.sin(self.angle)
        u, v = dx * cos + dy * sin, -dx * sin + dy * cos
        r2 = (u / self.a) ** 2 + (v / self.b) ** 2
        if self.wobble:
            theta = np.arctan2(v / self.b, u / self.a)
            scale = 1.0 + sum(amp * np.cos(freq * theta + phase) for amp, freq, phase in self.wobble)
            r2 = r2 / np.maximum(scale, 0.3) ** 2
        return r2

    def bbox(self, shape) -> tuple[slice, slice]:
        """Index box that contains the (wobbled, rotated) ellipse, clipped to the image."""
        reach = max(self.a, self.b) * (1.0 + sum(abs(amp) for amp, _, _ in self.wobble)) + 2
        y0, y1 = int(max(self.cy - reach, 0)), int(min(self.cy + reach + 1, shape[0]))
        x0, x1 = int(max(self.cx - reach, 0)), int(min(self.cx + reach + 1, shape[1]))
        return slice(y0, max(y1, y0)), slice(x0, max(x1, x0))

    def scaled(self, factor: float) -> "Ellipse":
        return Ellipse(self.cx, self.cy, self.a * factor, self.b * factor, self.angle, self.wobble)


@dataclass
class Lesion:
    kind: str  # "Tumor", "Cyst" or "Stone"
    side: int  # -1: image left (patient right), +1: image right
    cx: float
    cy: float
    z: float  # centre along the series axis, same units as slice positions
    radius: float  # pixels at the lesion's equator
    hu: float
    texture: float  # HU amplitude of internal heterogeneity (tumors)
    necrosis: float  # fraction of the radius that is necrotic (tumors), 0 for none
    wobble: tuple = ()

    def radius_at(self, z: float) -> float:
        dz = (z - self.z) * self.radius * 1.6  # lesions are roughly spherical over ~ +-0.6 z units
        return float(np.sqrt(max(self.radius ** 2 - dz ** 2, 0.0)))


@dataclass
class Patient:
    size: int
    seed: int
    body: Ellipse
    fat_mm: float
    wall: float
    enhanced: bool
    phase_hu: dict
    liver: Ellipse
    spleen: Ellipse
    kidneys: list
    spine: tuple
    aorta: tuple
    ivc: Ellipse
    bowel: list
    table: dict
    noise_hu: float
    blur: float
    distractors: list = field(default_factory=list)
    lesion: Lesion | None = None


def _u(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def _wobble(rng: np.random.Generator, amount: float, terms: int = 3) -> tuple:
    return tuple((_u(rng, 0, amount), int(rng.integers(2, 7)), _u(rng, 0, 2 * np.pi)) for _ in range(terms))


def sample_patient(rng: np.random.Generator, size: int = 256, lesion: str | None = None) -> Patient:
    """Random anatomy; `lesion` is None (normal) or one of LESION_CLASSES.

    The steps draw from `rng` in a fixed order, so a seed gives the same patient (and the same slices)."""
    zoom = _u(rng, 0.78, 1.1)  # field of view: how much of the image the body fills
    body = _sample_body(rng, size, zoom)
    enhanced = rng.random() < 0.85
    phase = _sample_phase(rng, enhanced)
    spine = _sample_spine(rng, size, zoom, body)
    kidneys = _sample_kidneys(rng, size, zoom, spine)
    liver, spleen = _sample_liver_and_spleen(rng, body)
    aorta, ivc = _sample_vessels(rng, size, zoom, spine)
    bowel = _sample_bowel(rng, size, zoom, body)
    table = _sample_table(rng, size, body)
    patient = Patient(
        size=size, seed=int(rng.integers(2**31)), body=body, fat_mm=size * _u(rng, 0.012, 0.07) * zoom,
        wall=size * _u(rng, 0.012, 0.025) * zoom, enhanced=enhanced, phase_hu=phase, liver=liver,
        spleen=spleen, kidneys=kidneys, spine=spine, aorta=aorta, ivc=ivc,
        bowel=bowel, table=table, noise_hu=_u(rng, 6, 28), blur=_u(rng, 0.5, 1.1) * size / 256,
    )
    patient.distractors = _sample_distractors(rng, patient)
    if lesion is not None:
        patient.lesion = _sample_lesion(rng, patient, lesion)
    return patient


def _sample_body(rng: np.random.Generator, s: int, zoom: float) -> Ellipse:
    cx, cy = s * _u(rng, 0.46, 0.54), s * _u(rng, 0.42, 0.5)
    a, b = s * 0.41 * zoom * _u(rng, 0.85, 1.08), s * 0.30 * zoom * _u(rng, 0.85, 1.1)
    return Ellipse(cx, cy, a, b, _u(rng, -0.04, 0.04), _wobble(rng, 0.025))


def _sample_phase(rng: np.random.Generator, enhanced: bool) -> dict:
    """Tissue densities (HU) of the contrast phase: enhanced (portal venous) or unenhanced."""
    return {
        "cortex": _u(rng, 150, 260) if enhanced else _u(rng, 28, 40),
        "medulla_drop": _u(rng, 30, 110) if enhanced and rng.random() < 0.6 else _u(rng, -5, 15),
        "liver": _u(rng, 95, 130) if enhanced else _u(rng, 50, 65),
        "spleen": _u(rng, 100, 140) if enhanced else _u(rng, 40, 55),
        "vessel": _u(rng, 150, 320) if enhanced else _u(rng, 35, 50),
        "muscle": _u(rng, 45, 65),
        "fat": _u(rng, -115, -85),
    }


def _sample_spine(rng: np.random.Generator, s: int, zoom: float, body: Ellipse) -> tuple[float, float, float]:
    """(x, y, radius) of the vertebral body, behind the body's centre."""
    return body.cx + _u(rng, -0.01, 0.01) * s, body.cy + body.b * _u(rng, 0.5, 0.6), s * 0.047 * zoom


def _sample_kidneys(rng: np.random.Generator, s: int, zoom: float, spine: tuple) -> list[Ellipse]:
    spine_x, spine_y, _ = spine
    kidneys = []
    for side in (-1, 1):
        k_cx = spine_x + side * s * _u(rng, 0.14, 0.175) * zoom
        k_cy = spine_y - s * _u(rng, 0.01, 0.05) * zoom
        # About 5-6 cm by 6-7 cm in cross-section against a 30-35 cm wide abdomen.
        k_a, k_b = s * _u(rng, 0.05, 0.064) * zoom, s * _u(rng, 0.066, 0.085) * zoom
        # Long axis tilts so the hilum faces forward and inward, as in real axial anatomy.
        kidneys.append(Ellipse(k_cx, k_cy, k_a, k_b, side * _u(rng, 0.35, 0.7), _wobble(rng, 0.04)))
    return kidneys


def _sample_liver_and_spleen(rng: np.random.Generator, body: Ellipse) -> tuple[Ellipse, Ellipse]:
    cx, cy, a, b = body.cx, body.cy, body.a, body.b
    liver = Ellipse(cx - a * _u(rng, 0.35, 0.5), cy - b * _u(rng, 0.05, 0.25), a * _u(rng, 0.45, 0.6),
                    b * _u(rng, 0.55, 0.75), _u(rng, -0.3, 0.3), _wobble(rng, 0.06))
    spleen = Ellipse(cx + a * _u(rng, 0.55, 0.7), cy + b * _u(rng, -0.1, 0.2), a * _u(rng, 0.12, 0.2),
                     b * _u(rng, 0.25, 0.4), _u(rng, -0.6, 0.2), _wobble(rng, 0.05))
    return liver, spleen


def _sample_vessels(rng: np.random.Generator, s: int, zoom: float, spine: tuple) -> tuple[tuple, Ellipse]:
    """The aorta (x, y, radius) and the inferior vena cava, in front of the spine."""
    spine_x, spine_y, spine_r = spine
    aorta = (spine_x + s * _u(rng, 0.01, 0.03) * zoom, spine_y - spine_r * _u(rng, 1.6, 2.0), s * 0.018 * zoom)
    ivc = Ellipse(spine_x - s * _u(rng, 0.035, 0.06) * zoom, spine_y - spine_r * _u(rng, 1.5, 2.0),
                  s * 0.022 * zoom, s * 0.015 * zoom, _u(rng, -0.3, 0.3))
    return aorta, ivc


def _sample_bowel(rng: np.random.Generator, s: int, zoom: float, body: Ellipse) -> list[dict]:
    """Bowel loops in the front of the abdomen: wall, content (sometimes oral contrast) and gas."""
    bowel = []
    for _ in range(int(rng.integers(8, 18))):
        angle, radius = _u(rng, 0, 2 * np.pi), np.sqrt(_u(rng, 0.0, 1.0)) * 0.75
        bx, by = body.cx + np.cos(angle) * body.a * radius, body.cy - abs(np.sin(angle)) * body.b * radius * 0.9
        bowel.append({
            "ellipse": Ellipse(bx, by, s * _u(rng, 0.015, 0.045) * zoom, s * _u(rng, 0.012, 0.035) * zoom,
                               _u(rng, 0, np.pi), _wobble(rng, 0.1)),
            "content": _u(rng, -10, 60) if rng.random() < 0.8 else _u(rng, 150, 400),  # oral contrast
            "gas": _u(rng, 0, 0.8) if rng.random() < 0.55 else 0.0,
        })
    return bowel


def _sample_table(rng: np.random.Generator, s: int, body: Ellipse) -> dict:
    """The scanner table below the body (absent in one patient in ten), with an optional second rail."""
    return {
        "present": rng.random() < 0.9,
        "y": body.cy + body.b + s * _u(rng, 0.02, 0.12),
        "rise": s * _u(rng, 0.0, 0.12),  # how far the cradle's edges curve up
        "thickness": _u(rng, 1.0, 3.0) * s / 256,
        "hu": _u(rng, 150, 700),
        "second": rng.random() < 0.6,
        "gap": s * _u(rng, 0.02, 0.05),
    }


def _sample_distractors(rng: np.random.Generator, p: Patient) -> list:
    """Look-alikes outside the kidneys, in every class: liver cysts and vascular calcifications."""
    items = []
    if rng.random() < 0.3:
        r = p.liver.a * _u(rng, 0.08, 0.2)
        items.append(("disc", p.liver.cx + _u(rng, -0.4, 0.4) * p.liver.a,
                      p.liver.cy + _u(rng, -0.4, 0.4) * p.liver.b, r, _u(rng, 0, 20)))
    if rng.random() < 0.35:
        ax, ay, ar = p.aorta
        angle = _u(rng, 0, 2 * np.pi)
        items.append(("disc", ax + np.cos(angle) * ar, ay + np.sin(angle) * ar, p.size * 0.006,
                      _u(rng, 300, 900)))
    return items


def _sample_lesion(rng: np.random.Generator, p: Patient, kind: str) -> Lesion:
    side_index = int(rng.integers(2))
    kidney = p.kidneys[side_index]
    side = -1 if side_index == 0 else 1
    angle = _u(rng, 0, 2 * np.pi)
    k_r = min(kidney.a, kidney.b)
    if kind == "Tumor":
        # Mostly large masses (5-10 cm, as in the Kaggle tumor slices), some small ones.
        radius = k_r * (_u(rng, 1.6, 3.0) if rng.random() < 0.9 else _u(rng, 1.0, 1.6))
        offset = _u(rng, 0.4, 1.0)  # from inside the parenchyma to exophytic at the border
        cortex = p.phase_hu["cortex"]
        # Enhanced: hypo-enhancing against cortex; unenhanced: a few tens of HU off the parenchyma.
        hu = cortex - _u(rng, 60, 140) if p.enhanced else cortex + float(rng.choice([-1, 1])) * _u(rng, 35, 60)
        # Renal cell carcinoma is typically heterogeneous: patchy enhancement, often central necrosis.
        texture = _u(rng, 70, 110)
        necrosis = _u(rng, 0.35, 0.65) if radius > k_r and rng.random() < 0.7 else 0.0
        wobble = _wobble(rng, 0.12, 4)
    elif kind == "Cyst":
        radius = k_r * _u(rng, 0.35, 0.95)
        offset = _u(rng, 0.3, 1.05)
        hu, texture, necrosis, wobble = _u(rng, -5, 18), 0.0, 0.0, _wobble(rng, 0.015, 2)
    elif kind == "Stone":
        radius = p.size * _u(rng, 0.007, 0.016)
        offset = _u(rng, 0.0, 0.45)  # in the renal sinus / collecting system
        hu, texture, necrosis, wobble = _u(rng, 350, 1300), 0.0, 0.0, _wobble(rng, 0.15, 2)
    else:
        raise ValueError(f"unknown lesion kind {kind!r}; expected one of {LESION_CLASSES}")
    cx = kidney.cx + np.cos(angle) * kidney.a * offset
    cy = kidney.cy + np.sin(angle) * kidney.b * offset
    return Lesion(kind, side, float(cx), float(cy), 0.0, float(radius), float(hu), texture, necrosis, wobble)


def _smooth_noise(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    noise = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return noise / (noise.std() + 1e-6)


def _paint(canvas: np.ndarray, e: Ellipse, value, xx, yy, within: float = 1.0, where=None,
           outside: float | None = None) -> tuple:
    """Set `canvas` to `value` (a number or a full-size array) where `e.r2 <= within` (and `where`,
    and `r2 > outside` for rings). Works on the ellipse's bounding box only, which keeps rendering fast."""
    box = e.bbox(canvas.shape)
    r2 = e.r2(xx[box], yy[box])
    hit = r2 <= within
    if outside is not None:
        hit &= r2 > outside
    if where is not None:
        hit &= where[box]
    region = canvas[box]
    region[hit] = value[box][hit] if isinstance(value, np.ndarray) else value
    return box, hit, r2


def render_slice(p: Patient, z: float = 0.0, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One axial slice at series position z (about -1..1): HU image and lesion mask (bool).

    Tissues are painted back to front in a fixed order (later ones cover earlier ones), then the scanner
    blurs, adds its table and noise."""
    rng = np.random.default_rng(p.seed + int(round(z * 1000)) + 7) if rng is None else rng
    s = p.size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    hu = np.full((s, s), AIR, np.float32)
    inside, cavity = _draw_body_wall(hu, p, xx, yy)
    _draw_liver_and_spleen(hu, p, z, cavity, xx, yy)
    _draw_bowel(hu, p, z, cavity, xx, yy)
    _draw_spine(hu, p, inside, xx, yy, rng)
    ax, ay, ar = p.aorta
    _paint(hu, Ellipse(ax, ay, ar, ar), p.phase_hu["vessel"], xx, yy)
    _paint(hu, p.ivc, p.phase_hu["vessel"] * 0.8, xx, yy)
    _draw_kidneys(hu, p, z, xx, yy)
    for _, dx, dy, dr, dhu in p.distractors:
        _paint(hu, Ellipse(dx, dy, dr, dr), dhu, xx, yy)
    mask = np.zeros((s, s), bool)
    if p.lesion is not None:
        mask = _draw_lesion(hu, p.lesion, z, xx, yy, rng)
    return _scan(hu, p, xx, yy, rng), mask


def _region(shape, painted: tuple) -> np.ndarray:
    """Where `_paint` painted, as a full-size mask (it returns the hits within the ellipse's box)."""
    box, hit, _ = painted
    mask = np.zeros(shape, bool)
    mask[box] = hit
    return mask


def _draw_body_wall(hu, p: Patient, xx, yy) -> tuple[np.ndarray, np.ndarray]:
    """Subcutaneous fat, the muscle wall and the visceral fat inside it. Returns (inside the body, inside
    the abdominal cavity), the masks later organs are confined to."""
    fat = p.phase_hu["fat"]
    inside = _region(hu.shape, _paint(hu, p.body, fat, xx, yy))
    wall_outer = p.body.scaled(1.0 - p.fat_mm / p.body.b)
    wall_inner = wall_outer.scaled(1.0 - p.wall / wall_outer.b)
    _paint(hu, wall_outer, p.phase_hu["muscle"], xx, yy)
    # Visceral fat, denser than subcutaneous.
    cavity = _region(hu.shape, _paint(hu, wall_inner, fat + 15, xx, yy))
    return inside, cavity


def _breathe(p: Patient, z: float) -> float:
    return z * p.size * 0.01  # organs drift a little between slices


def _draw_liver_and_spleen(hu, p: Patient, z: float, cavity, xx, yy) -> None:
    liver_scale = np.clip(1.0 - 0.35 * (z + 0.3), 0.35, 1.1)
    liver = Ellipse(p.liver.cx, p.liver.cy + _breathe(p, z), p.liver.a * liver_scale, p.liver.b * liver_scale,
                    p.liver.angle, p.liver.wobble)
    _paint(hu, liver, p.phase_hu["liver"], xx, yy, where=cavity)
    spleen_scale = np.clip(1.0 - 0.5 * (z + 0.2), 0.2, 1.1)
    _paint(hu, p.spleen.scaled(spleen_scale), p.phase_hu["spleen"], xx, yy, where=cavity)


def _draw_bowel(hu, p: Patient, z: float, cavity, xx, yy) -> None:
    for loop in p.bowel:
        e = loop["ellipse"]
        e = Ellipse(e.cx + z * p.size * 0.02, e.cy + _breathe(p, z), e.a, e.b, e.angle + z, e.wobble)
        _paint(hu, e, p.phase_hu["muscle"] - 10, xx, yy, where=cavity, outside=0.7)  # wall
        _paint(hu, e, loop["content"], xx, yy, within=0.7, where=cavity)
        if loop["gas"] > 0:  # gas rises: the anterior part of the lumen
            level = e.cy - e.b * (1 - 2 * loop["gas"])
            _paint(hu, e, AIR + 50, xx, yy, within=0.7, where=cavity & (yy < level))


def _draw_spine(hu, p: Patient, inside, xx, yy, rng: np.random.Generator) -> None:
    """Psoas and paraspinal muscles, the vertebra (cortex, trabecular bone), its arch, canal and process."""
    sx, sy, sr = p.spine
    muscle = p.phase_hu["muscle"]
    for side in (-1, 1):
        _paint(hu, Ellipse(sx + side * sr * 1.6, sy - sr * 0.1, sr * 0.8, sr * 1.1, side * 0.3), muscle, xx, yy)
        _paint(hu, Ellipse(sx + side * sr * 1.25, sy + sr * 2.3, sr * 1.1, sr * 0.9), muscle, xx, yy, where=inside)
    vertebra = Ellipse(sx, sy, sr, sr * 0.9)
    _paint(hu, vertebra, 800.0, xx, yy)
    _paint(hu, vertebra, 230.0 + 40 * _smooth_noise(rng, hu.shape, 1.5), xx, yy, within=0.7)
    _paint(hu, Ellipse(sx, sy + sr * 1.45, sr * 0.45, sr * 0.4), 650.0, xx, yy)  # posterior arch
    _paint(hu, Ellipse(sx, sy + sr * 1.45, sr * 0.3, sr * 0.25), 15.0, xx, yy)  # spinal canal
    _paint(hu, Ellipse(sx, sy + sr * 2.2, sr * 0.18, sr * 0.7), 650.0, xx, yy, where=inside)  # spinous process


def _kidney_scale(z: float) -> float:
    """How much of a kidney's cross-section shows at series position z (the poles are smaller)."""
    return float(np.sqrt(max(1.0 - (z * 0.55) ** 2, 0.15)))


def label_map(p: Patient, z: float, lesion: np.ndarray) -> np.ndarray:
    """The slice's mask in kidneyct's convention (docs/sources.md): 1 kidney, 2 tumor, 3 cyst, 0 elsewhere; a
    stone lies in the kidney and counts as kidney. `lesion` is `render_slice`'s lesion mask."""
    s = p.size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    labels = np.zeros((s, s), np.uint8)
    for kidney in p.kidneys:
        _paint(labels, kidney.scaled(_kidney_scale(z)), MASK_LABELS["Kidney"], xx, yy)
    if p.lesion is not None:
        labels[lesion] = MASK_LABELS.get(p.lesion.kind, MASK_LABELS["Kidney"])
    return labels


def _draw_kidneys(hu, p: Patient, z: float, xx, yy) -> None:
    """Cortex, medulla, and the renal sinus fat and pelvis opening toward the hilum (medial and anterior)."""
    ph = p.phase_hu
    for kidney in p.kidneys:
        k = kidney.scaled(_kidney_scale(z))
        side = np.sign(k.cx - p.spine[0])
        _paint(hu, k, ph["cortex"], xx, yy)
        _paint(hu, k, ph["cortex"] - ph["medulla_drop"], xx, yy, within=0.55)
        near_kidney = _region(hu.shape, _paint(np.zeros(hu.shape, np.float32), k, 1.0, xx, yy, within=1.1))
        hilum = Ellipse(k.cx - side * k.a * 0.45, k.cy - k.b * 0.15, k.a * 0.45, k.b * 0.35, k.angle)
        _paint(hu, hilum, ph["fat"] + 20, xx, yy, where=near_kidney)
        _paint(hu, hilum, 10.0, xx, yy, within=0.35, where=near_kidney)


def _scan(hu, p: Patient, xx, yy, rng: np.random.Generator) -> np.ndarray:
    """What the scanner makes of the anatomy: point-spread blur (partial-volume edges), the table, noise."""
    s = p.size
    anatomy = ndimage.gaussian_filter(hu, p.blur)
    _draw_table(anatomy, p, xx, yy)
    noise = ndimage.gaussian_filter(rng.standard_normal((s, s)).astype(np.float32), 0.7 * s / 256)
    noise *= p.noise_hu / (noise.std() + 1e-6)
    out = anatomy + noise
    out[anatomy < -950] = np.maximum(out[anatomy < -950], AIR)  # air reads as -1000, not below
    return out.astype(np.float32)


def _draw_lesion(hu, lesion: Lesion, z, xx, yy, rng) -> np.ndarray:
    radius = lesion.radius_at(z)
    mask = np.zeros(hu.shape, bool)
    if radius < 0.6:
        return mask
    e = Ellipse(lesion.cx, lesion.cy, radius, radius * 0.95, 0.0, lesion.wobble)
    if lesion.kind == "Tumor":
        texture = _smooth_noise(rng, hu.shape, max(radius / 4, 1.0)) * lesion.texture
        values = lesion.hu + texture
        if lesion.necrosis > 0:
            necrotic = _region(hu.shape, _paint(np.zeros(hu.shape, np.float32), e, 1.0, xx, yy,
                                                 within=lesion.necrosis ** 2))
            values = np.where(necrotic, 20.0 + texture * 0.4, values)
        box, hit, _ = _paint(hu, e, values, xx, yy)
    else:
        box, hit, _ = _paint(hu, e, lesion.hu, xx, yy)
    mask[box] = hit
    return mask


def _draw_table(hu, p: Patient, xx, yy):
    t = p.table
    if not t["present"]:
        return
    centre = p.body.cx
    curve = t["y"] - t["rise"] * ((xx - centre) / (p.size / 2)) ** 2
    for offset in ([0.0, t["gap"]] if t["second"] else [0.0]):
        band = np.abs(yy - (curve + offset)) <= t["thickness"] / 2
        hu[band & (hu < -500)] = t["hu"] * (0.6 if offset else 1.0)


# ----------------------------------------------------------------------------------------------
# Writing datasets


def series_positions(rng: np.random.Generator, n_slices: int) -> np.ndarray:
    """Neighbouring slice positions around a lesion's centre (z = 0), a few millimetres apart."""
    spacing = _u(rng, 0.06, 0.14)
    start = _u(rng, -0.25, 0.25) - spacing * (n_slices - 1) / 2
    return start + spacing * np.arange(n_slices)


def _render_series(task) -> list:
    patient, positions = task
    return [render_slice(patient, float(z)) for z in positions]


def _split_counts(n: int, classes: list[str]) -> dict[str, int]:
    base, extra = divmod(n, len(classes))
    return {c: base + (1 if i < extra else 0) for i, c in enumerate(classes)}


def _plan_series(rng: np.random.Generator, n: int, classes: list[str], size: int,
                 slices_per_series: tuple[int, int]) -> list[tuple]:
    """(class, series id, first number, patient, positions) per series. Anatomy is drawn here, in order, so the
    data depend on the seed alone; rendering runs in parallel."""
    plan = []
    for class_name, count in _split_counts(n, classes).items():
        made, series_number = 0, 0
        while made < count:
            length = min(int(rng.integers(slices_per_series[0], slices_per_series[1] + 1)), count - made)
            lesion = class_name if class_name in LESION_CLASSES else None
            patient = sample_patient(rng, size, lesion)
            positions = series_positions(rng, length)
            if lesion is not None:  # every slice of a lesion class must show its lesion
                positions = positions * min(1.0, 0.5 / max(np.abs(positions).max(), 1e-6))
            plan.append((class_name, f"{class_name.lower()}-{series_number:04d}", made, patient, positions))
            made += length
            series_number += 1
    return plan


def generate_dataset(
    out: str | Path, n: int = 400, seed: int = 0, size: int = 256, classes=PHANTOM_CLASSES,
    fmt: str = "png", slices_per_series: tuple[int, int] = (3, 9), progress: bool = True, masks: bool = False,
) -> Path:
    """Write a class-folder dataset of phantom slices; returns the manifest path.

    png: <Class>/<Class>- (N).png, numbered consecutively along each series like the Kaggle export,
    lesion masks beside as ``.mask.png``. dicom: <Class>/<series>/IM-NNNN.dcm (one series folder
    per patient). nifti: <Class>/<series>.nii.gz, masks as <series>.mask.nii.gz. With `masks` (png and
    nifti), also every slice's kidney and lesion labels as a masked source reads them (docs/sources.md):
    masks/<image stem>.png or masks/<series>.nii.gz.
    """
    if fmt not in writers.WRITERS:
        raise ValueError(f"unknown phantom format {fmt!r}; choose from {sorted(writers.WRITERS)}")
    if masks and fmt not in writers.LABEL_WRITERS:
        raise ValueError(f"label masks are written for {sorted(writers.LABEL_WRITERS)} phantoms, not {fmt}")
    canonical = {c.lower(): c for c in PHANTOM_CLASSES}
    unknown = [c for c in classes if c.lower() not in canonical]
    if unknown:
        raise ValueError(f"unknown phantom class(es) {unknown}; choose from {list(PHANTOM_CLASSES)}")
    classes = [canonical[c.lower()] for c in classes]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for class_name in classes:
        (out / class_name).mkdir(exist_ok=True)
    plan = _plan_series(np.random.default_rng(seed), n, classes, size, slices_per_series)
    rows = []
    bar = progress_bar(total=n, enabled=progress, desc="phantoms", unit="slice")
    workers = min(len(plan), os.cpu_count() or 1)
    with ProcessPoolExecutor(workers) if workers > 1 else nullcontext() as pool:
        rendered = (pool.map if pool else map)(_render_series, [(p, pos) for *_, p, pos in plan])
        for (class_name, series_id, first, patient, positions), slices in zip(plan, rendered):
            written = writers.WRITERS[fmt](out / class_name, class_name, series_id, first, slices, positions, seed)
            if masks:
                maps = [label_map(patient, float(z), lesion) for (_, lesion), z in zip(slices, positions)]
                writers.LABEL_WRITERS[fmt](out, written, maps)
            rows += written
            bar.update(len(slices))
    bar.close()
    manifest = out / MANIFEST
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "SYNTHETIC.json").write_text(json.dumps({
        "synthetic": True, "generator": "kidneyct.synthetic.phantom", "seed": seed, "n": n, "size": size,
        "format": fmt, "classes": classes,
        "note": "Synthetic CT phantoms, not patient data. Results on them say nothing about real scans.",
    }, indent=2))
    return manifest


def is_synthetic(root: str | Path) -> bool:
    """True when the folder (or a parent up to 3 levels) was written by the phantom generator."""
    root = Path(root).resolve()
    return any((folder / "SYNTHETIC.json").exists() for folder in [root, *list(root.parents)[:3]])
