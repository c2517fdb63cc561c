"""Shortcut probe: how much of the class can be told without looking at the kidneys.

Two measurements, both series-disjoint:
- **Background only.** Every slice with its body blanked (what is left: the table, the field of view,
  the air, burned-in annotations) is shrunk to a small thumbnail and a logistic regression predicts the
  class from it under grouped cross-validation. Above-chance accuracy means the data set gives its
  classes away outside the patient, a shortcut any model can take.
- **Kidneys blanked vs kept.** A trained model predicts each test slice as it is, with the kidney
  region blanked (located kidneys grown for a mass, or the prior position beside the spine), and with an
  equal region elsewhere in the body blanked (the control: blanking itself changes the image). A model
  that looks at the kidneys falls to chance when they are blanked and not when the control is.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import ndimage

from kidneyct.preprocess.body import body_mask
from kidneyct.evaluation.ranking import roc_auc
from kidneyct.preprocess.kidney import kidney_region, locate_kidneys

THUMBNAIL = 24  # side of the background thumbnails: table and field of view survive, anatomy does not
CONTROL_SHIFT = 0.35  # the control region: the kidney region moved forward by this share of the body height


def blank_body(unit: np.ndarray) -> np.ndarray:
    """The slice with the patient's body set to black (the background alone); unchanged if no body."""
    mask = body_mask(unit)
    return unit if mask is None else np.where(mask, 0.0, unit).astype(np.float32)


def _thumbnail(image: np.ndarray, side: int = THUMBNAIL) -> np.ndarray:
    zoom = (side / image.shape[0], side / image.shape[1])
    return ndimage.zoom(image, zoom, order=1)[:side, :side].ravel()


def _balanced_accuracy(y: np.ndarray, predicted: np.ndarray) -> float:
    recalls = [np.mean(predicted[y == c] == c) for c in np.unique(y)]
    return float(np.mean(recalls))


@dataclass
class ProbeScore:
    """Balanced accuracy and tumor-vs-rest ROC-AUC of one probe condition, per image."""

    balanced_accuracy: float
    roc_auc: float
    n: int

    def to_dict(self) -> dict:
        return {"balanced_accuracy": self.balanced_accuracy, "roc_auc": self.roc_auc, "n": self.n}


def background_only(units: list[np.ndarray], labels: np.ndarray, folds: np.ndarray, positive: int | None) -> dict:
    """Grouped cross-validated logistic regression on body-blanked thumbnails.

    Args:
        units: [0, 1] display slices (any size).
        labels: class index per slice.
        folds: fold index per slice (series-disjoint, e.g. from grouped_stratified_folds).
        positive: the tumor class index (for the ROC-AUC), or None.

    Returns:
        {"background_only": ProbeScore dict, "chance": 1 / number of classes}.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = np.stack([_thumbnail(blank_body(u)) for u in units])
    labels = np.asarray(labels)
    predicted = np.zeros(len(labels), int)
    scores = np.zeros(len(labels))
    for fold in np.unique(folds):
        test = folds == fold
        if len(np.unique(labels[~test])) < 2:
            continue
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(features[~test], labels[~test])
        predicted[test] = model.predict(features[test])
        if positive is not None and positive in model.classes_:
            scores[test] = model.predict_proba(features[test])[:, list(model.classes_).index(positive)]
    auc = roc_auc((labels == positive).astype(int), scores) if positive is not None else float("nan")
    score = ProbeScore(_balanced_accuracy(labels, predicted), auc, len(labels))
    return {"background_only": score.to_dict(), "chance": 1.0 / len(np.unique(labels))}


def fill_region(unit: np.ndarray, region: np.ndarray) -> np.ndarray:
    """`region` replaced by the body's median soft-tissue intensity, with a little of the slice's own
    texture, so the blanked area looks like featureless tissue rather than a black hole."""
    if not region.any():
        return unit
    body = unit > 0.03
    level = float(np.median(unit[body & ~region])) if (body & ~region).any() else float(np.median(unit))
    out = unit.copy()
    out[region] = level
    return out


def control_region(region: np.ndarray, body: np.ndarray, shift: float = CONTROL_SHIFT) -> np.ndarray:
    """The kidney region moved forward (up) by `shift` of the body's height, kept inside the body."""
    rows = np.flatnonzero(body.any(1))
    if len(rows) == 0:
        return np.zeros_like(region)
    offset = int(round(shift * (rows[-1] - rows[0] + 1)))
    moved = np.zeros_like(region)
    moved[:region.shape[0] - offset] = region[offset:]
    return moved & body & ~region


def occlusion_images(units: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each [0, 1] slice: (kidneys blanked, control blanked) images and whether a kidney region
    could be placed at all (slices without a spine, e.g. coronal cuts, have none and are left out)."""
    kidneys, control, usable = [], [], []
    for unit in units:
        region = kidney_region(locate_kidneys(unit))
        body = unit > 0.03
        kidneys.append(fill_region(unit, region))
        control.append(fill_region(unit, control_region(region, body)))
        usable.append(bool(region.any()))
    return np.stack(kidneys), np.stack(control), np.array(usable)


def occlusion_predictions(predict: Callable[[np.ndarray], np.ndarray], units: list[np.ndarray]) -> dict:
    """A model's class probabilities for each slice as it is, with the kidney region blanked and with the
    control region blanked: {"kept", "kidneys_blanked", "control_blanked": [N, K] arrays (NaN rows for
    slices where no kidney region could be placed), "usable": bool [N]}."""
    blanked, control, usable = occlusion_images(units)
    out = {"usable": usable}
    for name, images in (("kept", np.stack(units)), ("kidneys_blanked", blanked), ("control_blanked", control)):
        probs = predict(images[usable]) if usable.any() else np.zeros((0, 2))
        full = np.full((len(units), probs.shape[1]), np.nan)
        full[usable] = probs
        out[name] = full
    return out


CONDITIONS = ("kept", "kidneys_blanked", "control_blanked")


def occlusion_scores(predictions: dict, labels: np.ndarray, positive: int | None) -> dict:
    """Balanced accuracy and ROC-AUC per condition over the usable slices, and the share of the model's
    above-chance accuracy that survives with the kidneys blanked ("share_outside_kidneys")."""
    usable = predictions["usable"]
    y = np.asarray(labels)[usable]
    chance = 1.0 / max(2, len(np.unique(labels)))
    out = {"usable": int(usable.sum()), "left_out": int((~usable).sum()), "chance": chance}
    for name in CONDITIONS:
        probs = predictions[name][usable]
        accuracy = _balanced_accuracy(y, probs.argmax(1)) if len(y) else float("nan")
        auc = roc_auc((y == positive).astype(int), probs[:, positive]) if positive is not None and len(y) else float("nan")
        out[name] = ProbeScore(accuracy, auc, len(y)).to_dict()
    above = out["kept"]["balanced_accuracy"] - chance
    out["share_outside_kidneys"] = (float((out["kidneys_blanked"]["balanced_accuracy"] - chance) / above)
                                    if above > 0.02 else float("nan"))
    return out


def occlusion_probe(predict: Callable[[np.ndarray], np.ndarray], units: list[np.ndarray], labels: np.ndarray,
                    positive: int | None) -> dict:
    """A model's accuracy with the kidneys kept, blanked, and an equal control region blanked.

    Args:
        predict: [N, H, W] float [0, 1] images -> class probabilities [N, K] (e.g. a Predictor on unit images).
        units: the model-input-sized [0, 1] slices (test or out-of-fold slices only).
        labels: class index per slice.
        positive: the tumor class index, or None.

    Returns:
        {"kept", "kidneys_blanked", "control_blanked": ProbeScore dicts over the usable slices,
        "usable": n, "left_out": n, "share_outside_kidneys": above-chance accuracy left with the
        kidneys blanked, as a share of the above-chance accuracy with them}.
    """
    return occlusion_scores(occlusion_predictions(predict, units), labels, positive)


def source_probe(tumor: np.ndarray, origins: list[str], sources: list[str]) -> dict:
    """How much a model's out-of-fold tumor score knows the source instead of the tumor.

    Where one source brings the tumors and another only normal kidneys, "which hospital" predicts the class;
    a model that learnt that scores a source's normal kidneys by their source. Two readings:
    - within each source, Tumor against its other slices (the lesion, with the acquisition held fixed);
    - between sources, normal kidneys only ("Normal" slices): the ROC-AUC with which the score puts one
      source's normal slices above another's. 0.5: the score does not tell where a normal kidney was scanned.

    Args:
        tumor: p(tumor) per slice, out of fold.
        origins: each slice's class folder ("Tumor", "Normal", "Cyst", ...; "Tumor" is the positive class).
        sources: each slice's source name.

    Returns:
        {"within": {source: {"roc_auc", "tumor", "other"}}, "normals": {source: {"n", "median", "q90"}},
        "between_normals": [{"higher", "lower", "roc_auc"}] for every pair of sources with normal slices,
        "pooled_roc_auc", "mean_within_roc_auc"} (the mean over sources with both classes, weighted by tumors).
    """
    tumor, sources = np.asarray(tumor, float), np.asarray(sources)
    positive = np.array([o.lower() == "tumor" for o in origins])
    normal = np.array([o.lower() == "normal" for o in origins])
    names = sorted(set(sources.tolist()))
    within, normals = {}, {}
    for name in names:
        here = sources == name
        entry = {"tumor": int((here & positive).sum()), "other": int((here & ~positive).sum()), "roc_auc": float("nan")}
        if entry["tumor"] and entry["other"]:
            entry["roc_auc"] = roc_auc(positive[here].astype(int), tumor[here])
        within[name] = entry
        if (here & normal).any():
            values = tumor[here & normal]
            normals[name] = {"n": int(len(values)), "median": float(np.median(values)),
                             "q90": float(np.quantile(values, 0.9))}
    between = []
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            if first in normals and second in normals:
                both = normal & np.isin(sources, [first, second])
                auc = roc_auc((sources[both] == first).astype(int), tumor[both])
                higher, lower = (first, second) if auc >= 0.5 else (second, first)
                between.append({"higher": higher, "lower": lower, "roc_auc": float(max(auc, 1.0 - auc))})
    scored = [(e["roc_auc"], e["tumor"]) for e in within.values() if np.isfinite(e["roc_auc"])]
    mean_within = float(np.average([a for a, _ in scored], weights=[n for _, n in scored])) if scored else float("nan")
    return {"within": within, "normals": normals, "between_normals": between,
            "pooled_roc_auc": roc_auc(positive.astype(int), tumor) if positive.any() and (~positive).any() else float("nan"),
            "mean_within_roc_auc": mean_within}
