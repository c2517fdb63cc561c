"""Acquisition augmentation: cost per batch, agreement of the torch JPEG with Pillow's, and a figure.

    OMP_NUM_THREADS=1 python benchmarks/acquisition.py      # timings (CPU, and CUDA if present)
    python benchmarks/acquisition.py --no-time --jpeg --figure docs/images/acquisition-augmentations.png

--jpeg compresses real Kaggle slices with both and prints the PSNR between them per quality; --figure
draws, for two real slices, one row per family (the strong preset's ranges, always on): the original,
then the lowest, middle and highest of 64 draws along the family's main parameter. Both need the real
data (../shared/data/ct-kidney). Prints JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from kidneyct.preprocess.acquisition import ACQUISITIONS, FAMILIES, SPANS, families, jpeg_compress

KAGGLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "ct-kidney" / \
    "CT-KIDNEY-DATASET-Normal-Cyst-Tumor-Stone"
FIGURE_SLICES = ("Normal/Normal- (1).jpg", "Tumor/Tumor- (1).jpg")  # a wide and a narrow export window
JPEG_SLICES = ("Normal/Normal- (1).jpg", "Normal/Normal- (500).jpg", "Tumor/Tumor- (1).jpg",
               "Cyst/Cyst- (10).jpg", "Stone/Stone- (5).jpg")
LABELS = {"fov": "zoom {:.2f}", "resolution": "res {:.2f}", "blur": "sigma {:.2f}", "sharpen": "sigma {:.2f}",
          "noise": "sd {:.3f}", "window": "level {:+.2f}", "gamma": "gamma {:.2f}", "jpeg": "q {:.0f}"}
SORT_COLUMN = {"window": 2}  # sort the window row by width ratio, the others by their first parameter


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--sizes", type=int, nargs="+", default=[96, 128, 224])
    p.add_argument("--repeats", type=int, default=5, help="timed passes; the best is reported")
    p.add_argument("--no-time", action="store_true")
    p.add_argument("--jpeg", action="store_true", help="PSNR of the torch JPEG against Pillow's on real slices")
    p.add_argument("--figure", default=None, help="write the figure here (PNG)")
    p.add_argument("--draws", type=int, default=3, help="figure: draws per family and slice")
    p.add_argument("--tile", type=int, default=120, help="figure: tile side in pixels")
    return p.parse_args(argv)


def read(name: str) -> np.ndarray:
    return np.array(Image.open(KAGGLE / name).convert("L"))


def time_presets(batch: int, sizes: list[int], repeats: int, device: str) -> dict:
    """Best milliseconds per batch of `sample` + `apply`, per preset, family (always on) and size."""
    generator = torch.Generator(device).manual_seed(0)
    results = {}
    for size in sizes:
        images = torch.rand(batch, 1, size, size, device=device)  # content does not change the cost
        policies = {"mild": ACQUISITIONS["mild"], "strong": ACQUISITIONS["strong"]}
        policies.update({f"{f} (always)": families([f], "strong", 1.0) for f in FAMILIES})
        for name, policy in policies.items():
            results[f"{name} @ {size}px"] = round(best_ms(lambda: policy(images, generator), repeats, device), 2)
    return results


def best_ms(run, repeats: int, device: str) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 1000.0 * min(times)


def jpeg_agreement(qualities=(30, 50, 75, 90, 95)) -> dict:
    """PSNR (dB) torch vs Pillow, and Pillow vs the input, per quality, over the JPEG_SLICES."""
    images = [read(name) for name in JPEG_SLICES]
    out = {}
    for quality in qualities:
        versus, loss = [], []
        for image in images:
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, "JPEG", quality=quality)
            pillow = np.asarray(Image.open(buffer)).astype(np.float64) / 255.0
            unit = torch.from_numpy(image).float().div(255.0)[None, None]
            ours = jpeg_compress(unit, torch.tensor([float(quality)]))[0, 0].double().numpy()
            versus.append(psnr(ours, pillow))
            loss.append(psnr(pillow, image / 255.0))
        out[f"q{quality}"] = {"torch_vs_pillow_db_min": round(min(versus), 1),
                              "torch_vs_pillow_db_mean": round(float(np.mean(versus)), 1),
                              "pillow_vs_input_db_mean": round(float(np.mean(loss)), 1)}
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10.0 * np.log10(1.0 / max(np.mean((a - b) ** 2), 1e-12)))


def family_row(image: torch.Tensor, family: str, draws: int, seed: int) -> tuple[torch.Tensor, list[str]]:
    """`draws` augmentations of one image by one family, from the weakest to the strongest of 64 draws
    along the family's main parameter (so the row shows the ends of its range)."""
    policy = families([family], "strong", 1.0)
    params = policy.sample(64, torch.Generator().manual_seed(seed))
    flag = SPANS[family][0]
    params = params[params[:, flag + SORT_COLUMN.get(family, 1)].argsort()]
    params = params[torch.linspace(0, len(params) - 1, draws).round().long()]
    images = policy.apply(image.expand(draws, -1, -1, -1), params)
    labels = []
    for row in params:
        value = row[flag + 1].item()
        text = LABELS[family].format(value)
        if family in ("window", "sharpen"):  # their second parameter: width ratio, amount
            text += f" {'w x' if family == 'window' else 'a '}{row[flag + 2].item():.2f}"
        labels.append(text)
    return images, labels


def figure(path: str, draws: int, tile: int) -> dict:
    """Rows: families; per slice the original then `draws` augmentations; labels under each tile."""
    slices = [torch.from_numpy(read(name)).float().div(255.0)[None, None] for name in FIGURE_SLICES]
    label_height, gap = 12, 8
    columns = len(slices) * (draws + 1)
    width = columns * tile + gap * (len(slices) - 1)
    canvas = Image.new("L", (width, len(FAMILIES) * (tile + label_height)), 255)
    draw = ImageDraw.Draw(canvas)
    for row, family in enumerate(FAMILIES):
        top = row * (tile + label_height)
        for s, image in enumerate(slices):
            images, labels = family_row(image, family, draws, seed=row * 10 + s)
            tiles = torch.cat([image, images])
            labels = [f"{family}: original"] + labels
            for c in range(draws + 1):
                left = (s * (draws + 1) + c) * tile + s * gap
                canvas.paste(to_tile(tiles[c:c + 1], tile), (left, top))
                draw.text((left + 2, top + tile), labels[c], fill=0)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, optimize=True)
    return {"figure": path, "bytes": Path(path).stat().st_size, "size": canvas.size}


def to_tile(image: torch.Tensor, tile: int) -> Image.Image:
    """Area-downsample to the tile (a 256 px slice to 128 px averages 2x2 pixels)."""
    small = F.interpolate(image, size=(tile, tile), mode="area")[0, 0]
    return Image.fromarray(np.clip(np.rint(small.numpy() * 255.0), 0, 255).astype(np.uint8))


def main(argv=None) -> None:
    args = parse_args(argv)
    report = {}
    if not args.no_time:
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        report["ms_per_batch"] = {d: time_presets(args.batch, args.sizes, args.repeats, d) for d in devices}
        report["batch"], report["torch_threads"] = args.batch, torch.get_num_threads()
    if args.jpeg:
        report["jpeg_vs_pillow"] = jpeg_agreement()
    if args.figure:
        report["figure"] = figure(args.figure, args.draws, args.tile)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
