"""The scope gate: which slices a tumor call may rest on. The model was trained on slices through the
kidneys; a whole series also holds pelvis, liver and chest slices, where its probabilities mean nothing.

- A series or volume (ordered slices): slices where the anatomical kidney locator finds a kidney are in
  scope, and so is the span from the first to the last of them grown by a margin (6 mm by default), because a
  tumor distorts the kidney it grows in and the locator then misses it. Found kidneys farther from the rest
  than kidneys reach (`kidney_extent_mm`, when the slice positions are known) are false finds and out of
  scope, so that one find on a pelvis slice does not pull every slice up to the kidneys into scope. No located
  slice at all: the series is out of scope and gets no call.
- A single slice (a JPG export): in scope when a kidney is located, or else when the model's penultimate
  features lie within the distance to the training slices that the checkpoint's validation slices keep to.
- A cut that is not axial is out of scope.

- A segmenting model (`checkpoint.outputs.kidney_finder == "kidney map"`) is its own kidney finder: a slice is in
  scope when its overview's kidney map covers at least `outputs.segmentation.min_kidney_fraction` of the body
  view (no locator, no feature statistics); in a series or volume, so is the span between its first and last
  such slice grown by the same margin, for the same reason (a polar mass or a small pole the map does not find).
  An input in Hounsfield units whose found kidneys measure like unenhanced kidneys (kidneyct.preprocess.enhancement)
  is out of scope as a whole: the model only saw contrast-enhanced kidneys, and on an unenhanced scan a tumor is as
  grey as the kidney.

The gate's parameters come from the checkpoint (kidneyct.training.study_settings), with defaults for
checkpoints written before them (which then have no feature statistics: single slices without a located
kidney stay in scope, unchecked, and say so)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kidneyct.checkpoint import Outputs
from kidneyct.study.scope_stats import FeatureDistance, ScopeSettings, body_histogram, kidney_brightness
from kidneyct.study.settings import StudySettings
from kidneyct.io import CTSlice
from kidneyct.preprocess import Preprocessing
from kidneyct.preprocess.enhancement import ENHANCED_KIDNEY_HU, kidney_hu, study_enhanced
from kidneyct.preprocess.kidney import locate_kidneys

NOT_AXIAL = "not an axial slice (body taller than wide): out of scope"
NO_KIDNEY_IN_SERIES = "no kidney found in this series"
UNENHANCED = "no call: kidneys without contrast medium"


@dataclass(frozen=True)
class Look:
    """What the locator saw in one slice."""

    located: bool
    axial: bool
    brightness: float | None  # median [0, 1] intensity inside the located kidneys


@dataclass(frozen=True)
class SliceScope:
    in_scope: bool
    reason: str
    located: bool = False
    brightness: float | None = None


class ScopeGate:
    """The checkpoint's scope gate for slices read through preprocessing `prep` (whose window it uses)."""

    def __init__(self, prep: Preprocessing, settings: ScopeSettings = ScopeSettings(),
                 features: FeatureDistance | None = None):
        self.settings, self.features = settings, features
        self.view = Preprocessing(image_size=settings.view_size, window_level=prep.window_level,
                                  window_width=prep.window_width)


    def look(self, ct_slice: CTSlice) -> Look:
        """Locate the kidneys on the gate's whole-slice view (the checkpoint's window, `view_size` pixels)."""
        unit = self.view.to_uint8(ct_slice).astype(np.float32) / 255.0
        location = locate_kidneys(unit)
        return Look(location.found, location.axial, kidney_brightness(unit, location))

    def margin(self, slices: list[CTSlice]) -> int:
        """Slices the span grows by: margin_mm over the slice spacing when the positions tell it."""
        positions = [s.position for s in slices]
        if len(slices) > 1 and all(p is not None for p in positions):
            spacing = float(np.median(np.abs(np.diff(positions))))
            if spacing > 0:
                return max(1, round(self.settings.margin_mm / spacing))
        return self.settings.margin_slices

    def kidney_stretch(self, slices: list[CTSlice], located: list[int]) -> list[int]:
        """The located slices (positions in `slices`, ascending) that lie within `kidney_extent_mm` of each other
        and hold the most of them (ties: the most compact); all of them when the slice positions are unknown."""
        positions = [slices[i].position for i in located]
        if len(located) < 2 or any(p is None for p in positions):
            return located
        along = np.abs(np.asarray(positions, np.float64) - positions[0])  # slices are in anatomical order
        ends = np.searchsorted(along, along + self.settings.kidney_extent_mm, side="right")
        counts = ends - np.arange(len(located))
        extents = along[ends - 1] - along
        start = min(np.flatnonzero(counts == counts.max()), key=lambda k: extents[k])
        return located[start:ends[start]]

    def series(self, slices: list[CTSlice], looks: list[Look]) -> list[SliceScope]:
        """Scope of each slice of one series or volume, `slices` in anatomical order with their `looks`."""
        located = [i for i, look in enumerate(looks) if look.located]
        if not located:
            return [SliceScope(False, NOT_AXIAL if not look.axial else NO_KIDNEY_IN_SERIES, False, look.brightness)
                    for look in looks]
        margin = self.margin(slices)
        kept = self.kidney_stretch(slices, located)
        first, last = kept[0], kept[-1]
        span = f"kidneys located on slices {_index(slices, first)}-{_index(slices, last)}, margin {margin} slices"
        scopes = []
        for i, look in enumerate(looks):
            if not look.axial:
                scopes.append(SliceScope(False, NOT_AXIAL, False, look.brightness))
            elif look.located and first <= i <= last:
                scopes.append(SliceScope(True, "kidney located", True, look.brightness))
            elif look.located:
                scopes.append(SliceScope(False, f"kidney-like find more than {self.settings.kidney_extent_mm:.0f} mm "
                                                f"from where this series' kidneys lie ({span}): taken as a false "
                                                "find, out of scope", True, look.brightness))
            elif first - margin <= i <= last + margin:
                scopes.append(SliceScope(True, f"inside the kidney span ({span})", False, look.brightness))
            else:
                scopes.append(SliceScope(False, f"outside the kidney span ({span})", False, look.brightness))
        return scopes

    def single(self, look: Look, features: np.ndarray | None) -> SliceScope:
        """Scope of a slice on its own, from what the locator saw and its penultimate features (None when
        the backend cannot give them)."""
        if not look.axial:
            return SliceScope(False, NOT_AXIAL, False, look.brightness)
        if look.located:
            return SliceScope(True, "kidney located", True, look.brightness)
        if self.features is None or features is None:
            return SliceScope(True, "no kidney located; not checked against the training slices (no feature "
                                    "statistics in this checkpoint or backend)", False, look.brightness)
        distance = float(self.features.distance(features[None])[0])
        limit = f"{self.features.threshold:.1f}, the {self.features.acceptance:.0%} limit of validation slices"
        if distance <= self.features.threshold:
            return SliceScope(True, f"no kidney located, but like the training slices (feature distance "
                                    f"{distance:.1f} <= {limit})", False, look.brightness)
        return SliceScope(False, f"no kidney located and unlike the training slices (feature distance "
                                 f"{distance:.1f} > {limit})", False, look.brightness)


def _index(slices: list[CTSlice], position: int) -> int:
    index = slices[position].index
    return position if index is None else index


def kidney_map_scope(fraction: float, least: float) -> SliceScope:
    """A segmenting model's scope of one slice: in when its kidney map covers at least `least` of the body view."""
    share = f"{fraction:.2%} of the body view"
    if fraction >= least:
        return SliceScope(True, f"kidney found by the model's kidney map ({share} >= {least:.2%})", True)
    return SliceScope(False, f"no kidney in the model's kidney map ({share} < {least:.2%}): out of scope, not "
                             "assessed")


class InputJudge:
    """A checkpoint's scope gate and intensity profile, applied to the slices of one input at a time."""

    def __init__(self, settings: StudySettings, prep: Preprocessing, outputs: Outputs = Outputs()):
        self.prep = prep
        self.gate = ScopeGate(prep, settings.scope, settings.features)
        self.profile = settings.intensity
        segmentation = outputs.segmentation
        # The least kidney-map share of a segmenting model that finds kidneys itself; None: the locator's gate.
        self.least_kidney = (segmentation.min_kidney_fraction if segmentation is not None
                             and outputs.kidney_finder == "kidney map" else None)

    @property
    def needs_features(self) -> bool:
        return self.least_kidney is None and self.gate.features is not None

    @property
    def look(self):
        """What runs on each slice where its pixels are read: the locator, unless the model finds kidneys itself."""
        return self.gate.look if self.least_kidney is None else None

    def scopes(self, slices: list[CTSlice], is_study: bool, features: np.ndarray | None,
               looks: list[Look] | None = None, kidney_fraction: np.ndarray | None = None) -> list[SliceScope]:
        """Each slice's scope: as a series when `is_study`, else one by one (`features`: [N, D] or None;
        `looks`: the gate's looks when taken already, where the pixels were read; `kidney_fraction`: a
        segmenting model's kidney-map shares, which decide alone)."""
        if self.least_kidney is not None:
            if kidney_fraction is None:
                raise ValueError("a segmenting model's scope needs its kidney-map shares")
            found = [kidney_map_scope(float(f), self.least_kidney) for f in kidney_fraction]
            return self._kidney_map_span(slices, found) if is_study else found
        looks = [self.gate.look(s) for s in slices] if looks is None else looks
        if is_study:
            return self.gate.series(slices, looks)
        return [self.gate.single(look, None if features is None else features[i]) for i, look in enumerate(looks)]

    def _kidney_map_span(self, slices: list[CTSlice], found: list[SliceScope]) -> list[SliceScope]:
        """A series' scopes by its kidney map: each slice's own, and the series gate's span between the first and
        last slice where the map found a kidney (grown by its margin) for the slices the map alone left out."""
        spanned = self.gate.series(slices, [Look(scope.located, True, None) for scope in found])
        # Where they agree the map's own reason stands; where they differ the series decides: a slice inside the
        # span that the map left out comes in, a find too far from the series' kidneys goes out.
        return [own if own.in_scope == span.in_scope else span for own, span in zip(found, spanned)]

    def slice_warnings(self, image: np.ndarray, look: Look, hu: bool) -> list[str]:
        """Intensity warnings for one slice on its own (its model input `image` and what the locator saw)."""
        return self.warnings(image[None], [SliceScope(True, "", look.located, look.brightness)], hu)

    def warnings(self, images: np.ndarray, scopes: list[SliceScope], hu: bool) -> list[str]:
        """Intensity warnings for one input: the in-scope slices' body histograms (all slices' when none is
        in scope) and located kidneys' brightness against the training slices'."""
        if self.profile is None:
            return []
        chosen = [i for i, s in enumerate(scopes) if s.in_scope] or list(range(len(scopes)))
        histograms = [h for h in (body_histogram(images[i]) for i in chosen) if h is not None]
        kidneys = [scopes[i].brightness for i in chosen if scopes[i].brightness is not None]
        window = (self.prep.window_level, self.prep.window_width) if hu else None
        return self.profile.warnings(histograms, kidneys, window)


    def unenhanced(self, images: np.ndarray, kidney_maps: np.ndarray, scopes: list[SliceScope],
                   hu: bool) -> str | None:
        """The warning for an input in Hounsfield units whose found kidneys are unenhanced (their median HU inside
        the kidney map, over the in-scope slices, below ENHANCED_KIDNEY_HU); None when they are enhanced, when
        nothing was measured, or for display images (whose grey levels carry no HU).

        Args:
            images: the uint8 body views [N, V, V] (windowed from HU with the checkpoint's window).
            kidney_maps: kidney probabilities [N, V, V] on the same grid.
            scopes: each slice's scope.
            hu: whether the input was read in Hounsfield units.
        """
        if not hu:
            return None
        level, width = self.prep.window_level, self.prep.window_width
        medians = [kidney_hu(images[i], kidney_maps[i], level, width) for i, s in enumerate(scopes) if s.in_scope]
        if study_enhanced(medians) is not False:
            return None
        measured = float(np.median([m for m in medians if m is not None]))
        return (f"{UNENHANCED}: the kidneys the model found measure {measured:.0f} HU (median), below the "
                f"{ENHANCED_KIDNEY_HU:.0f} HU of contrast-enhanced kidneys; the model was trained on contrast-enhanced "
                "CT only, and on an unenhanced scan a tumor looks like the kidney around it")
