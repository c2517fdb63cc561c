"""Does the fast body crop (issue 17) crop exactly as the one it replaced, and does the faster JPEG reader
read the same grey levels? Per slice: the read pixels, the crop boxes, the masks, the cached uint8 images
and, given checkpoints, the predicted classes; and the time of both masks.

    OMP_NUM_THREADS=1 python benchmarks/body_crop_agreement.py \\
        --data ../shared/data/ct-kidney-512-sample ../shared/data/ct-kidney \\
        --checkpoint runs/cv/fold-0/best.pt --out benchmarks/results/body-crop-agreement.json

`reference_body_mask` is the body mask as it was before issue 17 (morphology through Euclidean distance
transforms of the whole slice), kept here, and only here, to compare against: the tests load it from this
file too. It is not a second definition of the crop; `kidneyct.preprocess.body` is the one.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = [ROOT.parent / "shared" / "data" / "ct-kidney-512-sample", ROOT.parent / "shared" / "data" / "ct-kidney"]


# --- the body mask before issue 17, verbatim but for names -------------------------------------------------
def _reference_dilate(mask, radius):
    return ndimage.distance_transform_edt(~mask) <= radius


def _reference_erode(mask, radius):
    padded = np.pad(mask, radius + 1)
    inside = ndimage.distance_transform_edt(padded) > radius
    return inside[radius + 1:-(radius + 1), radius + 1:-(radius + 1)]


def _reference_largest(mask):
    labels, count = ndimage.label(mask)
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    return labels == int(sizes.argmax()) + 1


def reference_body_mask(unit: np.ndarray, threshold: float = 0.03) -> np.ndarray | None:
    """The body mask as `kidneyct.preprocess.body.body_mask` computed it before issue 17."""
    side = max(unit.shape)
    bright = unit > threshold
    pad, close, open_ = side // 10, max(1, round(0.025 * side)), max(1, round(0.02 * side))
    closed = _reference_erode(_reference_dilate(np.pad(bright, pad), close), close)
    closed = ndimage.binary_fill_holes(closed[pad:-pad, pad:-pad])
    body = _reference_largest(_reference_dilate(_reference_erode(closed, open_), open_))
    if body is None or body.sum() < 0.02 * unit.size:
        return None
    return _reference_dilate(body, open_) & closed
# ------------------------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", default=[str(d) for d in DEFAULT_DATA], help="folders of slices (walked)")
    p.add_argument("--checkpoint", nargs="*", default=[], help="compare the predicted classes of these models")
    p.add_argument("--image-size", type=int, default=96, help="cached image size without a checkpoint")
    p.add_argument("--step", type=int, default=1, help="every N-th file only (quick runs)")
    p.add_argument("--out", default=None, help="write the JSON report here too")
    return p.parse_args(argv)


def _files(folder: str, step: int) -> list[Path]:
    from kidneyct.io import file_kind

    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and file_kind(p) == "raster")[::step]


def _uint8(unit: np.ndarray, mask: np.ndarray | None, size: int) -> np.ndarray:
    from kidneyct.preprocess import crop_box, pad_to_square, resize_to_uint8

    if mask is not None:
        top, bottom, left, right = crop_box(mask)
        unit = np.where(mask, unit, 0.0).astype(unit.dtype)[top:bottom, left:right]
    return resize_to_uint8(pad_to_square(unit), size)


def reference_unit(path: Path) -> np.ndarray | None:
    """A grey JPEG/PNG as the reader decoded it before issue 17 (RGB through Pillow's RGB-to-L), None for
    the other modes, which the reader did not change."""
    from PIL import Image

    with Image.open(path) as image:
        if image.mode not in ("L", "RGB"):
            return None
        return np.clip(np.asarray(image.convert("L"), dtype=np.float32) / 255.0, 0.0, 1.0)


def _timed(function, unit, seconds: dict, key: str):
    started = time.perf_counter()
    result = function(unit)
    seconds[key] += time.perf_counter() - started
    return result


def compare_folder(folder: str, step: int, size: int) -> tuple[dict, np.ndarray, np.ndarray]:
    """(summary, new uint8 images, reference uint8 images) for the slices under `folder`: the reader and
    the body crop of this checkout against those before issue 17."""
    from kidneyct.io import read_slices
    from kidneyct.preprocess import Preprocessing, body_mask, crop_box

    prep, offsets, counts, seconds = Preprocessing(size), [], {"reads": 0, "masks": 0}, {"new": 0.0, "reference": 0.0}
    new_images, reference_images, sides = [], [], set()
    for path in _files(folder, step):
        unit = prep.to_unit(read_slices(path)[0])
        before = reference_unit(path)
        before = unit if before is None else before
        counts["reads"] += bool(np.array_equal(unit, before))
        sides.add(int(max(unit.shape)))
        new = _timed(body_mask, unit, seconds, "new")
        reference = _timed(reference_body_mask, before, seconds, "reference")
        same_none = (new is None) == (reference is None)
        counts["masks"] += same_none and (new is None or bool(np.array_equal(new, reference)))
        offsets.append(np.abs(np.subtract(crop_box(new), crop_box(reference))).max()
                       if new is not None and reference is not None else (0 if same_none else 10 ** 6))
        new_images.append(_uint8(unit, new, size))
        reference_images.append(_uint8(before, reference, size))
    offsets, n = np.array(offsets), len(offsets)
    new_images, reference_images = np.stack(new_images), np.stack(reference_images)
    summary = {
        "folder": Path(folder).name, "slices": n, "side_px": sorted(sides), "reads_identical": counts["reads"],
        "boxes_within_2px": int((offsets <= 2).sum()), "largest_box_offset_px": int(offsets.max()),
        "masks_identical": int(counts["masks"]),
        "cached_images_identical": int(sum(np.array_equal(a, b) for a, b in zip(new_images, reference_images))),
        "ms_per_slice": {k: round(v / n * 1000, 2) for k, v in seconds.items()},
    }
    summary["speedup"] = round(seconds["reference"] / seconds["new"], 1)
    return summary, new_images, reference_images


def compare_predictions(checkpoint: str, new: np.ndarray, reference: np.ndarray, size: int) -> dict:
    from kidneyct.inference.predictor import Predictor
    from kidneyct.labels import decide

    predictor = Predictor.open(checkpoint, "cpu")
    if predictor.preprocessing.image_size != size or not predictor.preprocessing.body_crop:
        raise SystemExit(f"{checkpoint}: needs a body-crop model at --image-size {size}")
    a, b = (decide(predictor.probabilities_of(images), predictor.classes, predictor.threshold)
            for images in (new, reference))
    name = "/".join(Path(checkpoint).parts[-3:])  # e.g. run/fold-0/best.pt, not the machine's folders
    return {"checkpoint": name, "slices": len(a), "predicted_classes_identical": int((a == b).sum())}


def main(argv=None) -> dict:
    args = parse_args(argv)
    report = {"folders": [], "predictions": [], "load_average_before": [round(x, 2) for x in os.getloadavg()]}
    for folder in args.data:
        summary, new, reference = compare_folder(folder, args.step, args.image_size)
        report["folders"].append(summary)
        for checkpoint in args.checkpoint:
            report["predictions"].append({"folder": summary["folder"],
                                          **compare_predictions(checkpoint, new, reference, args.image_size)})
    report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print_and_save(report, args.out)
    return report


def print_and_save(report: dict, out: str | None) -> None:
    """The report as indented JSON on stdout, and in `out` when given."""
    text = json.dumps(report, indent=2)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")


if __name__ == "__main__":
    main()
