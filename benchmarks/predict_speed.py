"""How close `kidneyct predict` runs to the model's own speed (issue 17), on full-size JPEG slices.

In one run: model-only slices/s (forward passes over already preprocessed images) and end-to-end slices/s
of the one prediction path, `kidneyct.inference.run` (read, body crop, resize and the scope gate's kidney
locator in worker processes, model, results) over the same folder, alternated `--repeats` times, with their ratio; the share of each stage of one
slice's way (read, crop, resize, scope, model); the wall time of a one-slice `kidneyct predict` in a fresh process (start-up, imports,
checkpoint, one slice) next to a bare `import torch`; and `kidneyct serve`'s POST /predict latency for one
client sending one slice at a time. Prints JSON and writes it to --out.

    OMP_NUM_THREADS=2 python benchmarks/predict_speed.py --out benchmarks/results/predict-speed-cpu.json

Without --checkpoint, a model of the default recipe (architecture, input size, body crop) with fresh
weights is timed: speed does not depend on the weights. The load average of the machine is recorded:
on a shared CPU every number moves with it, the end-to-end/model-only ratio far less.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ct-kidney-512-sample"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `kidneyct predict` and `serve` run (see cli.py)

import numpy as np  # noqa: E402  (after the OpenMP setting, which torch reads when it loads)
from body_crop_agreement import print_and_save  # noqa: E402  (benchmarks/ is first on sys.path)
from inference_speed import fresh_checkpoint  # noqa: E402
from load import Upload, free_port, run_clients, stop  # noqa: E402
from startup import environment  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="default: the default recipe's model, fresh weights")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="a folder of slices (walked)")
    p.add_argument("--batch-size", type=int, default=64, help="as `kidneyct predict`")
    p.add_argument("--workers", type=int, default=None, help="predict's reader processes (default: its own)")
    p.add_argument("--repeats", type=int, default=3, help="alternated model-only and end-to-end passes")
    p.add_argument("--one-slice-runs", type=int, default=5, help="fresh `kidneyct predict` processes on one slice")
    p.add_argument("--serve-requests", type=int, default=100, help="POST /predict requests (0: skip serve)")
    p.add_argument("--out", default=None, help="write the JSON report here too")
    return p.parse_args(argv)


def default_recipe_checkpoint(folder: Path) -> Path:
    from kidneyct.config import DEFAULT_RECIPE, recipe_settings

    recipe = recipe_settings(DEFAULT_RECIPE)
    return fresh_checkpoint(recipe["model"], recipe["image_size"], folder, body_crop=recipe.get("body_crop", False))


def stage_times(items, prep, gate) -> tuple[dict, np.ndarray, list[int]]:
    """Seconds per slice of read, crop, resize and the scope gate's look (the kidney locator), one slice
    after another in this process; the images and the slices' sides."""
    from kidneyct.io import read_item
    from kidneyct.preprocess import crop_to_body, pad_to_square, resize_to_uint8

    seconds, images, sides = {"read": 0.0, "crop": 0.0, "resize": 0.0, "scope": 0.0}, [], set()
    for item in items:
        started = time.perf_counter()
        slices = read_item(item)[0]
        units = [prep.to_unit(s) for s in slices]  # decoding and scaling to [0, 1]
        read = time.perf_counter()
        sides |= {max(u.shape) for u in units}
        cropped = [crop_to_body(u) for u in units] if prep.body_crop else units
        crop = time.perf_counter()
        images += [resize_to_uint8(pad_to_square(u), prep.image_size) for u in cropped]
        resize = time.perf_counter()
        for ct_slice in slices:
            gate.look(ct_slice)
        seconds["read"] += read - started
        seconds["crop"] += crop - read
        seconds["resize"] += resize - crop
        seconds["scope"] += time.perf_counter() - resize
    return {k: v / len(images) for k, v in seconds.items()}, np.stack(images), sorted(sides)


def throughput(backend, images: np.ndarray, data: str, args) -> dict:
    """Model-only and end-to-end slices/s, alternated, and their ratio per repeat."""

    backend.logits(images[:args.batch_size], args.batch_size)  # warm-up: oneDNN kernel selection
    runs = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        backend.logits(images, args.batch_size)
        model = len(images) / (time.perf_counter() - started)
        started = time.perf_counter()
        results = list(backend.with_options(batch_size=args.batch_size, workers=args.workers).run([data]))
        end_to_end = sum(r.n_slices for r in results) / (time.perf_counter() - started)
        runs.append({"model_only": round(model, 1), "end_to_end": round(end_to_end, 1),
                     "ratio": round(end_to_end / model, 3)})
    return {"runs": runs, "median_ratio": statistics.median(r["ratio"] for r in runs),
            "median_model_only": statistics.median(r["model_only"] for r in runs),
            "median_end_to_end": statistics.median(r["end_to_end"] for r in runs)}


def fresh_process_seconds(command: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(round(time.perf_counter() - started, 2))
    return times


def one_slice(checkpoint: Path, image: Path, runs: int) -> dict:
    predict = [sys.executable, "-m", "kidneyct", "predict", "--checkpoint", str(checkpoint), str(image),
               "--no-progress"]
    times = fresh_process_seconds(predict, runs)
    torch_only = fresh_process_seconds([sys.executable, "-c", "import torch"], runs)
    return {"predict_seconds": times, "median_s": statistics.median(times),
            "import_torch_seconds": torch_only, "import_torch_median_s": statistics.median(torch_only)}


def serve_latency(checkpoint: Path, image: Path, requests: int) -> dict:
    """POST /predict latency, one client, one request at a time, against `kidneyct serve` in a subprocess."""
    import httpx

    port = free_port()
    command = [sys.executable, "-m", "kidneyct", "serve", "--checkpoint", str(checkpoint), "--port", str(port)]
    server = subprocess.Popen(command, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not _healthy(httpx, base):
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server did not come up: {server.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
        uploads = [Upload(image.name, image.read_bytes(), "good")]
        asyncio.run(run_clients(f"{base}/predict", uploads, 1, 5, 60))  # warm-up, not counted
        result = asyncio.run(run_clients(f"{base}/predict", uploads, 1, requests, 600))
    finally:
        stop(server, 20)
        server.stderr.close()
    return {"clients": 1, "image": image.name, **result}


def _healthy(httpx, base: str) -> bool:
    try:
        return httpx.get(base + "/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch

    from kidneyct.inference.predictor import Predictor
    from kidneyct.io import expand_inputs

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="kidneyct-speed-") as folder:
        checkpoint = Path(args.checkpoint) if args.checkpoint else default_recipe_checkpoint(Path(folder))
        backend = Predictor.open(checkpoint, "cpu")
        items, _ = expand_inputs([args.data])
        stages, images, sides = stage_times(items, backend.preprocessing, backend.judge.gate)
        speed = throughput(backend, images, args.data, args)
        stages["model"] = 1 / speed["median_model_only"]
        total = sum(stages.values())
        report = {
            "checkpoint": checkpoint.name if args.checkpoint else "default recipe, fresh weights",
            "model": backend.checkpoint.model.name, "preprocessing": backend.preprocessing.to_dict(),
            "data": Path(args.data).name, "slices": len(images), "side_px": sides,
            "batch_size": args.batch_size, "workers": args.workers, "throughput": speed,
            "stage_ms_per_slice": {k: round(v * 1000, 2) for k, v in stages.items()},
            "stage_share": {k: round(v / total, 3) for k, v in stages.items()},
            "one_slice": one_slice(checkpoint, items[0].path, args.one_slice_runs) if args.one_slice_runs else None,
            "serve": serve_latency(checkpoint, items[0].path, args.serve_requests) if args.serve_requests else None,
            "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                        "load_average_before": [round(x, 2) for x in load_before],
                        "load_average_after": [round(x, 2) for x in os.getloadavg()]},
        }
    print_and_save(report, args.out)
    return report


if __name__ == "__main__":
    main()
