"""Tiny synthetic multi-source datasets for the data tests: three sources shaped like the shared ones (a
Kaggle-like series source, a KiTS-like source with a manifest and masks, a Pancreas-like Normal-only source
with the patient in the file name). Images are 32 px noise; within a series or patient they are copies."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kidneyct.data.sources import Source

SIDE = 32


def _noise(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (SIDE, SIDE), dtype=np.uint8)


def square_mask(label: int) -> np.ndarray:
    """Background with a kidney square, and a `label` (2 tumor, 3 cyst) square inside it unless label is 1."""
    mask = np.zeros((SIDE, SIDE), np.uint8)
    mask[8:24, 8:24] = 1
    if label > 1:
        mask[12:18, 12:18] = label
    return mask


def series_source(root: Path, series: dict[str, int] | None = None) -> Source:
    """Class folders of numbered files; each series is `n` copies of one noise image."""
    series = series or {"Tumor": 4, "Normal": 6}
    number = 0
    for class_name, count in series.items():
        (root / class_name).mkdir(parents=True, exist_ok=True)
        for s in range(count):
            image = _noise(1000 * len(class_name) + s)
            for _ in range(3):
                number += 1
                Image.fromarray(image).save(root / class_name / f"{class_name}- ({number}).png")
    return Source("kaggle", root)


def case_source(root: Path, cases: dict[str, int] | None = None) -> Source:
    """One slice per case, a manifest naming the case and masks/<case>.png (tumor cases with a tumor)."""
    cases = cases or {"Tumor": 6, "Normal": 6, "NoKidney": 2}
    (root / "masks").mkdir(parents=True, exist_ok=True)
    rows, case = [], 0
    for class_name, count in cases.items():
        (root / class_name).mkdir(parents=True, exist_ok=True)
        for _ in range(count):
            name = f"case_{case:05d}"
            Image.fromarray(_noise(50_000 + case)).save(root / class_name / f"{name}.png")
            label = {"Tumor": 2, "Cyst": 3}.get(class_name, 1)
            mask = square_mask(label) if class_name != "NoKidney" else np.zeros((SIDE, SIDE), np.uint8)
            Image.fromarray(mask).save(root / "masks" / f"{name}.png")
            rows.append({"case_id": f"c{case}", "class": class_name, "file": f"{class_name}/{name}.png"})
            case += 1
    with open(root / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return Source("kits", root, "file", manifest="manifest.csv", masks=root / "masks", licence="CC BY-NC-SA 4.0")


def patient_source(root: Path, patients: int = 4, slices: int = 3) -> Source:
    """Normal/PANCREAS_00NN-<slice>.png; one stray file whose name names no patient."""
    (root / "Normal").mkdir(parents=True, exist_ok=True)
    for patient in range(1, patients + 1):
        for index in range(slices):
            image = _noise(90_000 + 100 * patient + index)
            Image.fromarray(image).save(root / "Normal" / f"PANCREAS_{patient:04d}-{1000 + index}.png")
    Image.fromarray(_noise(7)).save(root / "Normal" / "stray.png")
    return Source("pancreas", root, "pattern", pattern=r"^(PANCREAS_\d+)", licence="CC BY 3.0")


def three_sources(root: Path) -> list[Source]:
    return [series_source(root / "kaggle"), case_source(root / "kits"), patient_source(root / "pancreas")]


@pytest.fixture
def sources(tmp_path) -> list[Source]:
    """The three tiny sources under tmp_path: kaggle (series), kits (file + manifest + masks), pancreas (pattern)."""
    return three_sources(tmp_path)
