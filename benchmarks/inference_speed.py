"""CPU inference throughput, PyTorch and onnxruntime side by side, on the same preprocessed batch, plus
their largest logit difference. Prints JSON.

    OMP_NUM_THREADS=2 python benchmarks/inference_speed.py --model seed-cnn --image-size 224
    OMP_NUM_THREADS=2 python benchmarks/inference_speed.py --checkpoint runs/x/best.pt

Without --checkpoint a model with fresh weights is saved to a temporary checkpoint first (speed does
not depend on the weights). Times cover the forward passes only, not reading or resizing images.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--model", default="seed-cnn")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--n", type=int, default=256, help="images per timed pass")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3, help="timed passes; the best is reported")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for both (default: torch's)")
    return p.parse_args(argv)


def fresh_checkpoint(model_name: str, image_size: int, folder: Path, body_crop: bool = False) -> Path:
    """A checkpoint of `model_name` with fresh weights (speed does not depend on them) in `folder`."""
    from kidneyct.checkpoint import Checkpoint, write_checkpoint
    from kidneyct.models import ModelConfig, create_model, get_spec
    from kidneyct.preprocess import Preprocessing

    spec = get_spec(model_name)
    config = ModelConfig(model_name, 2, image_size, pretrained="none").resolved()
    model = create_model(config, load_pretrained=False)
    path = folder / "fresh.pt"
    prep = Preprocessing(image_size, mean=spec.mean, std=spec.std, body_crop=body_crop)
    return write_checkpoint(Checkpoint(config, ["Tumor", "Normal"], prep, model.state_dict()), path)


def images_per_second(run, images: np.ndarray, batch_size: int, repeats: int) -> float:
    run(images[:batch_size], batch_size)  # warm-up: allocations, oneDNN / ORT kernel selection
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run(images, batch_size)
        best = min(best, time.perf_counter() - started)
    return len(images) / best


def main(argv=None) -> dict:
    from kidneyct.inference.export import export_onnx
    from kidneyct.inference.predictor import OnnxPredictor, Predictor

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(args.checkpoint) if args.checkpoint else fresh_checkpoint(args.model, args.image_size,
                                                                                   Path(folder))
        torch_predictor = Predictor.open(checkpoint, "cpu")
        onnx_predictor = OnnxPredictor(export_onnx(checkpoint, Path(folder) / "model.onnx"), threads=threads)
    size = torch_predictor.preprocessing.image_size
    images = np.random.default_rng(0).integers(0, 256, (args.n, size, size), dtype=np.uint8)
    difference = torch.max(torch.abs(torch_predictor.logits(images[:64]) - onnx_predictor.logits(images[:64])))
    report = {
        "model": torch_predictor.checkpoint.model.name, "image_size": size, "batch_size": args.batch_size,
        "threads": threads, "images": args.n,
        "pytorch_images_per_second": round(images_per_second(torch_predictor.logits_uint8, images, args.batch_size,
                                                             args.repeats), 1),
        "onnxruntime_images_per_second": round(images_per_second(onnx_predictor.logits_uint8, images, args.batch_size,
                                                                 args.repeats), 1),
        "max_abs_logit_difference": float(difference),
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
