"""The shortcut probe finds a planted shortcut: phantoms whose class is given away by the table."""

import numpy as np
import pytest

from kidneyct.synthetic.phantom import render_slice, sample_patient
from kidneyct.preprocess.window import apply_window
from kidneyct.evaluation.probe import background_only, blank_body, occlusion_probe

SIZE = 96


def _phantoms(n: int, shortcut: bool, seed: int = 0):
    """Tumor (label 1) and normal (label 0) phantom slices; with `shortcut`, tumors lie on a curved
    cradle and normals on a flat table, otherwise the table is drawn independently of the class."""
    rng = np.random.default_rng(seed)
    units, labels = [], []
    for i in range(n):
        label = i % 2
        patient = sample_patient(rng, SIZE, "Tumor" if label else None)
        if shortcut:
            patient.table.update(present=True, rise=SIZE * (0.14 if label else 0.0), second=False,
                                 thickness=3.0 * SIZE / 256, hu=600.0)
        units.append(apply_window(render_slice(patient, 0.0)[0], 40, 400))
        labels.append(label)
    return units, np.array(labels)


def test_blank_body_keeps_only_the_background():
    units, _ = _phantoms(2, shortcut=True)
    background = blank_body(units[0])
    assert background[SIZE // 2, SIZE // 2] == 0.0  # the abdomen's centre is gone
    assert (background > 0.5).any()  # the table is still there


def test_background_probe_detects_the_planted_table_and_not_a_fair_table():
    folds = np.arange(60) % 5
    planted = background_only(*_phantoms(60, shortcut=True), folds=folds, positive=1)
    fair = background_only(*_phantoms(60, shortcut=False, seed=1), folds=folds, positive=1)
    assert planted["background_only"]["balanced_accuracy"] >= 0.9
    assert fair["background_only"]["balanced_accuracy"] <= 0.7


def _table_reader(images):
    """A shortcut model: tumor when the table rises at the sides (its lowest bright pixel sits higher
    in the outer columns than in the middle)."""
    side = images.shape[-1]

    def lowest_bright_row(columns):
        bright = images[:, :, columns] > 0.5
        rows = np.arange(side)[None, :, None]
        return np.where(bright, rows, 0).max(axis=(1, 2))

    rise = lowest_bright_row(slice(side // 2 - 2, side // 2 + 2)) - lowest_bright_row(slice(2, 6))
    p = 1 / (1 + np.exp(-(rise - 0.07 * side)))
    return np.stack([1 - p, p], 1)


def _kidney_reader(images):
    """A model that looks only at the kidneys: tumor when the kidney region holds air-dark pixels."""
    from kidneyct.preprocess.kidney import kidney_region, locate_kidneys

    dark = np.array([(image[kidney_region(locate_kidneys(image))] < 0.02).sum() for image in images])
    p = 1 / (1 + np.exp(-(dark - 3.0)))
    return np.stack([1 - p, p], 1)


def _planted_in_kidney(n: int, seed: int = 3):
    """Normal phantoms; the 'tumor' half carry a black disc at a located kidney (the only class signal)."""
    from kidneyct.preprocess.kidney import locate_kidneys

    rng = np.random.default_rng(seed)
    units, labels = [], []
    while len(units) < n:
        unit = apply_window(render_slice(sample_patient(rng, SIZE, None), 0.0)[0], 40, 400)
        location = locate_kidneys(unit)
        if not location.found:
            continue
        label = len(units) % 2
        if label:
            row, col = location.kidneys[0].centroid
            rows, cols = np.mgrid[0:SIZE, 0:SIZE]
            unit = np.where((rows - row) ** 2 + (cols - col) ** 2 <= 6, 0.0, unit).astype(np.float32)
        units.append(unit)
        labels.append(label)
    return units, np.array(labels)


def test_occlusion_probe_tells_a_shortcut_model_from_a_kidney_model():
    units, labels = _phantoms(40, shortcut=True, seed=2)
    shortcut = occlusion_probe(_table_reader, units, labels, positive=1)
    assert shortcut["usable"] >= 30
    assert shortcut["kept"]["balanced_accuracy"] >= 0.9
    assert shortcut["kidneys_blanked"]["balanced_accuracy"] >= 0.9  # the table still gives it away
    assert shortcut["share_outside_kidneys"] == pytest.approx(1.0, abs=0.15)

    units, labels = _planted_in_kidney(30)
    kidney = occlusion_probe(_kidney_reader, units, labels, positive=1)
    assert kidney["kept"]["balanced_accuracy"] >= 0.9
    assert kidney["kidneys_blanked"]["balanced_accuracy"] <= 0.6  # chance without the kidneys
    assert kidney["control_blanked"]["balanced_accuracy"] >= 0.9  # blanking elsewhere changes nothing
    assert kidney["share_outside_kidneys"] <= 0.25


def test_source_probe_tells_a_score_that_reads_the_source_from_one_that_reads_the_lesion():
    from kidneyct.evaluation.probe import source_probe

    rng = np.random.default_rng(0)
    # Source "tumors" brings every tumor and some normals; "healthy" only normals (the shortcut's set-up).
    origins = ["Tumor"] * 40 + ["Normal"] * 40 + ["Normal"] * 40
    sources = ["tumors"] * 80 + ["healthy"] * 40
    is_tumor = np.array([o == "Tumor" for o in origins])
    reads_source = np.where(np.array(sources) == "tumors", 0.7, 0.2) + rng.normal(0, 0.05, 120)
    reads_lesion = np.where(is_tumor, 0.8, 0.3) + rng.normal(0, 0.05, 120)

    cue = source_probe(reads_source, origins, sources)
    assert cue["within"]["tumors"]["roc_auc"] < 0.7  # inside its source it cannot tell a tumor
    assert cue["pooled_roc_auc"] > cue["mean_within_roc_auc"] + 0.1  # the pooled number is earned between sources
    assert cue["between_normals"] == [{"higher": "tumors", "lower": "healthy", "roc_auc": 1.0}]
    assert cue["within"]["healthy"]["tumor"] == 0 and np.isnan(cue["within"]["healthy"]["roc_auc"])

    lesion = source_probe(reads_lesion, origins, sources)
    assert lesion["within"]["tumors"]["roc_auc"] > 0.95
    assert lesion["between_normals"][0]["roc_auc"] < 0.7  # normal kidneys look alike wherever scanned
