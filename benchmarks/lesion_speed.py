"""Time of synthetic lesion insertion per batch, on phantom slices with their true kidney masks. Prints JSON.

    OMP_NUM_THREADS=1 python benchmarks/lesion_speed.py --image-size 96 --batch-size 32 --share 1.0
    python benchmarks/lesion_speed.py --device cuda --image-size 224 --batch-size 64

Times cover insert_lesions alone (the images are on the device already); the best and the median of
--repeats calls are reported, after one warm-up call, as wall-clock time and, on the CPU, as the
process's CPU time (which other jobs on a shared machine disturb less; with one thread it is close to
what the call would take on an idle core).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--share", type=float, default=1.0, help="share of the batch that receives a lesion")
    p.add_argument("--kind", default="tumor", choices=["tumor", "cyst"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    return p.parse_args(argv)


def phantom_batch(n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    from kidneyct.synthetic.phantom import render_slice, sample_patient
    from kidneyct.preprocess.window import apply_window

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    images, masks = [], []
    for _ in range(n):
        patient = sample_patient(rng, size)
        images.append(apply_window(render_slice(patient, 0.0)[0], 40, 400))
        masks.append(np.any([kidney.r2(xx, yy) <= 1 for kidney in patient.kidneys], axis=0))
    return torch.from_numpy(np.stack(images))[:, None], torch.from_numpy(np.stack(masks))


def main(argv=None) -> dict:
    from kidneyct.synthetic.lesions import insert_lesions

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    images, masks = (t.to(device) for t in phantom_batch(args.batch_size, args.image_size))
    generator = torch.Generator(device=device).manual_seed(0)
    apply = torch.rand(args.batch_size, generator=generator, device=device) < args.share

    def run() -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        insert_lesions(images, masks, apply, args.kind, generator)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - wall, time.process_time() - cpu

    run()  # warm-up: allocations, kernel selection
    walls, cpus = (sorted(times) for times in zip(*(run() for _ in range(args.repeats))))
    report = {
        "device": str(device), "threads": torch.get_num_threads(), "image_size": args.image_size,
        "batch_size": args.batch_size, "share": args.share, "kind": args.kind,
        "best_ms": round(walls[0] * 1000, 2), "median_ms": round(walls[len(walls) // 2] * 1000, 2),
    }
    if device.type == "cpu":
        report |= {"best_cpu_ms": round(cpus[0] * 1000, 2), "median_cpu_ms": round(cpus[len(cpus) // 2] * 1000, 2)}
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
