"""Write synthetic lesions inserted into real slices to disk, with masks, a manifest and a contact sheet,
so that people can look at what training on synthetic lesions would see (`kidneyct data synth`)."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from kidneyct.labels import KAGGLE_CLASSES
from kidneyct.preprocess import Preprocessing, body_mask
from kidneyct.io import MASK_MARKER, ImageReadError, file_kind, read_slices
from kidneyct.preprocess.kidney import KidneyLocation, locate_kidneys
from kidneyct.synthetic.lesions import KINDS, LesionModel, render_lesions

MANIFEST = "lesions.csv"
SHEET = "contact-sheet.png"
SHEET_EXAMPLES = 24


@dataclass(frozen=True)
class _Located:
    """A real slice in which the locator found at least one kidney."""

    source: Path
    class_name: str
    slice_index: int | None  # within a volume; None for single-slice files
    unit: np.ndarray  # [0, 1] display image
    location: KidneyLocation


@dataclass(frozen=True)
class Example:
    """One written example: the images as arrays and what the manifest says about them."""

    original: np.ndarray  # float [H, W] in [0, 1]
    with_lesion: np.ndarray
    lesion_mask: np.ndarray  # bool [H, W]
    kidney_mask: np.ndarray  # bool [H, W]
    row: dict


def find_class_images(data_root: str | Path, classes: list[str] | None = None) -> list[tuple[Path, str]]:
    """(file, class folder name) for every readable image file under the class folders of `data_root`.

    Args:
        data_root: a class-folder dataset (class folders at any depth, as for training).
        classes: class folder names to use (case-insensitive); None: whichever of Normal, Cyst, Tumor
            and Stone exist.

    Returns:
        Files in a stable order (sorted by path); mask files (``*.mask.*``) are left out.

    Raises:
        FileNotFoundError: no class folder or no image in them.
    """
    wanted = {c.lower() for c in (classes or KAGGLE_CLASSES)}
    found = []
    for current, dirs, names in os.walk(Path(data_root)):
        dirs.sort()
        if Path(current).name.lower() not in wanted:
            continue
        for folder, subdirs, files in os.walk(current):
            subdirs.sort()
            found += [(Path(folder) / name, Path(current).name) for name in sorted(files)
                      if file_kind(name) and MASK_MARKER not in name.lower() and not name.startswith(".")]
        dirs.clear()  # a class folder's subfolders belong to it
    if not found:
        raise FileNotFoundError(f"no image files in class folders {sorted(wanted)} under {data_root}")
    return found


def _to_unit(ct_slice, prep: Preprocessing, size: int | None) -> np.ndarray:
    if size is None:
        return prep.to_unit(ct_slice)
    return prep.to_uint8(ct_slice).astype(np.float32) / 255.0


def _located_slices(files: list[tuple[Path, str]], rng: np.random.Generator, size: int | None
                    ) -> Iterator[_Located]:
    """Slices with a located kidney, one per file, files in random order; within a volume the first
    slice (in random order) where a kidney is found. Unreadable files are passed over."""
    prep = Preprocessing(image_size=size or 224)
    for index in rng.permutation(len(files)):
        path, class_name = files[index]
        try:
            slices = read_slices(path)
        except ImageReadError:
            continue
        for position in rng.permutation(len(slices)):
            unit = _to_unit(slices[position], prep, size)
            location = locate_kidneys(unit)
            if location.found:
                yield _Located(path, class_name, int(position) if len(slices) > 1 else None, unit, location)
                break


def _stem(located: _Located, data_root: Path) -> str:
    """A file name unique within the class: the source's path below its class folder, without suffix."""
    parts = located.source.relative_to(data_root).parts
    below = list(parts[parts.index(located.class_name) + 1:])
    name = below[-1]
    below[-1] = name[:-len(".nii.gz")] if name.lower().endswith(".nii.gz") else Path(name).stem
    stem = "__".join(below)
    return stem if located.slice_index is None else f"{stem}-s{located.slice_index:03d}"


def _save_png(array: np.ndarray, path: Path) -> None:
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    else:
        array = np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)
    Image.fromarray(array).save(path)


def _write_example(located: _Located, data_root: Path, out: Path, kind: str, generator: torch.Generator,
                   model: LesionModel) -> Example:
    image = torch.from_numpy(located.unit.astype(np.float32))[None, None]
    kidney = torch.from_numpy(located.location.mask)[None]
    inserted = render_lesions(image, kidney, torch.ones(1, dtype=torch.bool), kind, generator, model)
    folder = out / located.class_name
    folder.mkdir(parents=True, exist_ok=True)
    stem = _stem(located, data_root)
    names = {"original": f"{stem}.png", "lesion_image": f"{stem}.{kind}.png", "mask": f"{stem}.{kind}.mask.png"}
    with_lesion = inserted.images[0, 0].numpy()
    lesion_mask = inserted.masks[0].numpy()
    for key, array in (("original", located.unit), ("lesion_image", with_lesion), ("mask", lesion_mask)):
        _save_png(array, folder / names[key])
    row_col = inserted.centres[0].tolist()
    row = {
        **{key: f"{located.class_name}/{name}" for key, name in names.items()},
        "source": located.source.relative_to(data_root).as_posix(),
        "slice": "" if located.slice_index is None else located.slice_index,
        "class": located.class_name, "kind": kind,
        "centre_row": int(row_col[0]), "centre_col": int(row_col[1]),
        "radius_px": round(float(inserted.radii[0]), 2),
        "kidney_radius_px": round(float(inserted.kidney_radius[0]), 2),
        "kidney_score": round(located.location.score, 4), "lesion_pixels": int(lesion_mask.sum()),
    }
    return Example(located.unit, with_lesion, lesion_mask, located.location.mask, row)


def write_lesion_examples(data_root: str | Path, out: str | Path, n: int, kind: str = "tumor", seed: int = 0,
                          classes: list[str] | None = None, size: int | None = None,
                          model: LesionModel = LesionModel()) -> Path:
    """Insert one synthetic lesion into each of `n` real slices whose kidneys the locator finds.

    For each slice, under ``out/<Class>/``: the original PNG, the PNG with the lesion
    (``<name>.<kind>.png``) and the lesion mask (``<name>.<kind>.mask.png``); in ``out``: the manifest
    (lesions.csv: files, source, class, kind, centre, radius, kidney score), SYNTHETIC.json and a
    contact sheet of up to 24 examples (original | with lesion | lesion in red, located kidney in green).

    Args:
        data_root: class-folder dataset (JPG/PNG exports, DICOM or NIfTI; any the readers read).
        out: output folder (created).
        n: how many examples to write; fewer when fewer slices show a located kidney.
        kind: "tumor" or "cyst".
        seed: chooses the slices and the lesions.
        classes: class folders to take slices from; None: Normal, Cyst, Tumor and Stone, where present.
        size: resize (pad to square) to this side first; None keeps each slice's own size.
        model: the lesion model.

    Returns:
        The manifest's path.

    Raises:
        ValueError: unknown kind or n < 1. FileNotFoundError: no images, or no kidney found in any.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown lesion kind {kind!r}; expected one of {KINDS}")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    data_root, out = Path(data_root).resolve(), Path(out)
    files = find_class_images(data_root, classes)
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    examples = []
    for located in _located_slices(files, rng, size):
        examples.append(_write_example(located, data_root, out, kind, generator, model))
        if len(examples) == n:
            break
    if not examples:
        raise FileNotFoundError(f"the kidney locator found no kidney in {len(files)} files under {data_root}")
    contact_sheet(examples[:SHEET_EXAMPLES]).save(out / SHEET, optimize=True)
    return _write_manifest(out, examples, {"data_root": str(data_root), "kind": kind, "seed": seed, "size": size,
                                           "lesion_model": model.to_dict()})


def _write_manifest(out: Path, examples: list[Example], settings: dict) -> Path:
    """The manifest CSV (one row per example) and the SYNTHETIC.json note beside it."""
    manifest = out / MANIFEST
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(examples[0].row))
        writer.writeheader()
        writer.writerows(example.row for example in examples)
    (out / "SYNTHETIC.json").write_text(json.dumps({
        "synthetic": True, "generator": "kidneyct.synthetic.lesion_examples", "n": len(examples), **settings,
        "note": "Synthetic lesions inserted into real CT slices, for research only: these are not real "
                "tumors or cysts, and the originals' diagnoses do not apply to the edited images.",
    }, indent=2))
    return manifest


_RED, _GREEN = 254, 255  # palette indices of the outlines; 0-253 are greys


def _tile(image: np.ndarray, size: tuple[int, int], resample) -> np.ndarray:
    """`image` resized to `size` (width, height); masks stay bool."""
    mode = "L" if image.dtype == bool else "F"
    data = image.astype(np.uint8) * 255 if image.dtype == bool else image.astype(np.float32)
    resized = np.asarray(Image.fromarray(data, mode=mode).resize(size, resample))
    return resized > 127 if image.dtype == bool else np.clip(resized, 0, 1)


def _outline(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask)


def _greys(unit: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(unit, 0, 1) * (_RED - 1)).astype(np.uint8)


def _body_box(unit: np.ndarray, aspect: float) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a box of `aspect` (width / height) around the body, or around the
    whole slice when no body is found: tiles then show anatomy, not the table and the air around it."""
    mask = body_mask(unit)
    if mask is None:
        mask = np.ones(unit.shape, bool)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    height = max(rows[-1] - rows[0] + 1, (cols[-1] - cols[0] + 1) / aspect) * 1.04
    width = height * aspect
    return (int(round((rows[0] + rows[-1] - height) / 2)), int(round((cols[0] + cols[-1] - width) / 2)),
            int(round(height)), int(round(width)))


def _crop(array: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The box's part of `array`, padded with zeros (black, or False) where the box leaves the slice."""
    top, left, height, width = box
    pad = max(0, -top, -left, top + height - array.shape[0], left + width - array.shape[1])
    padded = np.pad(array, pad)
    return padded[top + pad:top + pad + height, left + pad:left + pad + width]


def contact_sheet(examples: list[Example], tile: int = 160, per_row: int = 4) -> Image.Image:
    """Original | with lesion | outlines (lesion red, located kidney green) for each example, cropped
    to the body, `per_row` examples a row, as a palette PNG image (greys plus two colours: small files).

    Args:
        examples: what `_write_example` returned, in order.
        tile: width of each panel, pixels (panels are 4:3, like an abdomen's cross-section).
        per_row: examples per row.

    Returns:
        A PIL image in mode "P".
    """
    size = (tile, tile * 3 // 4)
    gap = max(2, tile // 32)
    rows = -(-len(examples) // per_row)
    sheet = np.full((rows * (size[1] + gap) - gap, per_row * (3 * tile + gap) - gap), 96, np.uint8)  # grey gaps
    for i, example in enumerate(examples):
        top, left = (i // per_row) * (size[1] + gap), (i % per_row) * (3 * tile + gap)
        box = _body_box(example.original, size[0] / size[1])
        original = _greys(_tile(_crop(example.original, box), size, Image.Resampling.BILINEAR))
        lesion = _greys(_tile(_crop(example.with_lesion, box), size, Image.Resampling.BILINEAR))
        outlined = lesion.copy()
        outlined[_outline(_tile(_crop(example.kidney_mask, box), size, Image.Resampling.NEAREST))] = _GREEN
        outlined[_outline(_tile(_crop(example.lesion_mask, box), size, Image.Resampling.NEAREST))] = _RED
        sheet[top:top + size[1], left:left + 3 * tile] = np.concatenate([original, lesion, outlined], 1)
    image = Image.fromarray(sheet, mode="P")
    grey = np.linspace(0, 255, _RED).round().astype(int)
    palette = np.stack([grey] * 3, 1).ravel().tolist() + [230, 40, 40, 40, 210, 60]
    image.putpalette(palette)
    return image
