"""How far an input is from the slices a model was trained on: what a checkpoint records about its training
slices (fitted at the end of training) and the measures inference compares new slices with.

- `FeatureDistance`: the Mahalanobis distance of the model's penultimate features to the training slices'
  (Ledoit-Wolf covariance), with a threshold that accepts a fixed share of the validation slices.
- `IntensityProfile`: the intensity histogram inside the body and the brightness of the located kidneys
  (contrast enhancement) of the training slices, on the model's input view.
- `ScopeSettings`: how the scope gate reads a slice (the locator's view) and how far a series' in-scope span
  reaches beyond its located kidneys.

Training fits them (kidneyct.study.settings), checkpoints store them and inference applies them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kidneyct.preprocess.body import body_mask
from kidneyct.preprocess.kidney import locate_kidneys
from kidneyct.records import DictRecord

ACCEPTANCE = 0.98  # share of validation slices the feature threshold accepts
BINS = 32  # intensity histogram bins over [0, 1]
INTENSITY_QUANTILE = 0.99  # share of validation slices within the histogram-distance threshold
KIDNEY_RANGE = (0.025, 0.975)  # the training kidneys' brightness range a study's kidneys are held to


@dataclass(frozen=True)
class ScopeSettings(DictRecord):
    view_size: int = 160  # side of the whole-slice view, in the checkpoint's window, the kidney locator reads
    # A series' span beyond its first and last located kidney: on the labelled real scan the locator missed the
    # last 6 mm of a kidney (two 3 mm slices with 29 and 6 kidney pixels), small cuts of a pole; on 5 mm slices
    # that is one slice.
    margin_mm: float = 6.0
    margin_slices: int = 1  # the same when the slice spacing is unknown
    # The longest stretch along the body the kidneys of one study occupy (two kidneys of about 11-13 cm, one lower
    # than the other, and room for a large polar mass). A kidney found beyond the window of this length that holds
    # the most found slices is a false find (the kidney map finds "kidney" on some thigh, pelvis and liver-dome
    # slices): it would otherwise stretch the span over every slice between it and the kidneys.
    kidney_extent_mm: float = 200.0


@dataclass
class FeatureDistance(DictRecord):
    """Mahalanobis distance to the training slices' penultimate features: d(x) = ||L^T (x - mean)|| with
    L L^T the (shrunk) precision matrix; in scope when d <= threshold."""

    mean: list
    cholesky: list  # L, [D, D]
    threshold: float
    acceptance: float
    n_train: int
    n_val: int

    @classmethod
    def fit(cls, train: np.ndarray, val: np.ndarray, acceptance: float = ACCEPTANCE) -> "FeatureDistance":
        """Mean and Ledoit-Wolf covariance of `train` [N, D]; the threshold accepts `acceptance` of `val`."""
        from sklearn.covariance import LedoitWolf  # deferred: only fitting needs scikit-learn

        estimate = LedoitWolf().fit(np.asarray(train, np.float64))
        cholesky = np.linalg.cholesky(estimate.precision_)
        fitted = cls(estimate.location_.tolist(), cholesky.tolist(), 0.0, acceptance, len(train), len(val))
        fitted.threshold = float(np.quantile(fitted.distance(val), acceptance))
        return fitted

    def distance(self, features: np.ndarray) -> np.ndarray:
        centred = np.asarray(features, np.float64) - np.asarray(self.mean)
        return np.linalg.norm(centred @ np.asarray(self.cholesky), axis=1)


def body_histogram(image: np.ndarray) -> np.ndarray | None:
    """Normalised histogram (BINS over [0, 1]) of the intensities inside the body of a uint8 image; None
    when no body is found."""
    unit = image.astype(np.float32) / 255.0
    mask = body_mask(unit)
    if mask is None:
        return None
    counts = np.histogram(unit[mask], bins=BINS, range=(0.0, 1.0))[0].astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Earth mover's distance between two histograms over [0, 1] (in intensity units)."""
    return float(np.abs(np.cumsum(a) - np.cumsum(b)).sum() / BINS)


def kidney_brightness(unit: np.ndarray, location=None) -> float | None:
    """Median [0, 1] intensity inside the located kidneys of a display slice (`location`: its
    KidneyLocation when already known), None when none is located."""
    location = locate_kidneys(unit) if location is None else location
    return float(np.median(unit[location.mask])) if location.found and location.mask.any() else None


def _histograms(images: np.ndarray) -> np.ndarray:
    found = [h for h in (body_histogram(image) for image in images) if h is not None]
    return np.stack(found) if found else np.zeros((0, BINS))


@dataclass
class IntensityProfile(DictRecord):
    """What the training slices looked like on the model's input view: the mean intensity histogram inside
    the body (with the distance that INTENSITY_QUANTILE of validation slices stay within) and the brightness
    range of their located kidneys, which contrast enhancement sets."""

    histogram: list
    threshold: float
    kidney: list | None  # [low, median, high] kidney brightness (KIDNEY_RANGE quantiles); None: too few kidneys
    n_slices: int
    n_kidney_slices: int

    @classmethod
    def fit(cls, train: np.ndarray, val: np.ndarray, sample: int = 400, seed: int = 0) -> "IntensityProfile | None":
        """From uint8 model-input images [N, S, S] of the training and validation splits (at most `sample` of
        each, drawn at random: the locator takes tens of milliseconds a slice). None without a body in any."""
        rng = np.random.default_rng(seed)
        train = train[np.sort(rng.permutation(len(train))[:sample])]
        val = val[np.sort(rng.permutation(len(val))[:sample])]
        reference = _histograms(train)
        if len(reference) == 0:
            return None
        mean = reference.mean(0)
        checked = _histograms(val) if len(val) else reference
        threshold = float(np.quantile([histogram_distance(h, mean) for h in checked], INTENSITY_QUANTILE))
        kidneys = [k for k in (kidney_brightness(image.astype(np.float32) / 255.0) for image in train) if k is not None]
        kidney = np.quantile(kidneys, [KIDNEY_RANGE[0], 0.5, KIDNEY_RANGE[1]]).tolist() if len(kidneys) >= 20 else None
        return cls(mean.tolist(), threshold, kidney, len(reference), len(kidneys))

    def warnings(self, histograms: list[np.ndarray], kidneys: list[float],
                 window: tuple[float, float] | None = None) -> list[str]:
        """Warnings for one study or image: its body histograms (mean compared) and located kidneys'
        brightness; `window` (level, width) turns brightness into HU for HU inputs."""
        found = []
        if histograms:
            distance = histogram_distance(np.mean(histograms, 0), np.asarray(self.histogram))
            if distance > self.threshold:
                found.append(f"intensities inside the body are unlike the training slices' (distance {distance:.3f} > "
                             f"{self.threshold:.3f}, the {INTENSITY_QUANTILE:.0%} limit of validation slices): another "
                             "window, contrast phase or export than the model was trained on")
        if kidneys and self.kidney is not None:
            found += self._kidney_warning(float(np.median(kidneys)), window)
        return found

    def _kidney_warning(self, brightness: float, window: tuple[float, float] | None) -> list[str]:
        low, _, high = self.kidney
        if low <= brightness <= high:
            return []

        def shown(value: float) -> str:
            return f"{value:.2f}" + (f" ({window[0] - window[1] / 2 + value * window[1]:.0f} HU)" if window else "")

        side = "darker" if brightness < low else "brighter"
        cause = ("likely a scan without contrast enhancement (or another window)" if brightness < low
                 else "another contrast phase or window")
        return [f"kidneys are {side} than in the training slices (median intensity {shown(brightness)}; training "
                f"{shown(low)} to {shown(high)}): {cause}; the model has not been validated on such scans"]
