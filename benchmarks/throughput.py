"""Throughput benchmark: prints one JSON object measured on the current device.

For seed-cnn, resnet50 and efficientnet-lite0 (backbones trained, not frozen, so both sides do the same
arithmetic): model-bound training img/s (synthetic tensors already on the device: no input pipeline),
end-to-end training img/s through kidneyct.training.train.train from JPEG files (decode cache, batch gather,
augmentation, optimiser; validation and checkpointing are outside the timed loop and reported as the
run's wall time), and their ratio. Also: cold decode time and warm cache load time for a folder
(repeated to a chosen count), the epoch time of a frozen ResNet50 head over cached feature vectors,
peak RSS and, on CUDA, peak GPU memory. Per model and size also the seconds the first epoch took beyond a
steady one (cuDNN autotuning, oneDNN set-up), and (section cv, on by default with --full) the wall time of a
5-fold `kidneyct cv` of the default recipe.

    python benchmarks/throughput.py                 # small defaults: minutes on 2 CPU cores
    python benchmarks/throughput.py --full          # the issue's sizes (128 and 224 px) and a 5-fold CV, for a GPU
    python benchmarks/throughput.py --memory-images 12446   # + peak RSS of a 224 px CPU training run

ImageNet weights are not needed (the arithmetic is the same): every model is built with pretrained=none.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from kidneyct.config import DEFAULT_RECIPE, recipe_config
from kidneyct.data.cache import CacheSettings
from kidneyct.data.catalogue import build_catalogue
from kidneyct.data.decode import decode_samples, default_workers
from kidneyct.experiments.cv import CVConfig, cross_validate
from kidneyct.models import ModelConfig, create_model
from kidneyct.runtime import autocast, configure_backend, cpu_threads, resolve_device
from kidneyct.training.distributed import DistContext
from kidneyct.training.engine import FeatureInputs, run_epoch
from kidneyct.training.train import cosine_with_warmup, make_optimizer, train

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MODELS = ("seed-cnn", "resnet50", "efficientnet-lite0")
# CPU defaults per model (image size, images linked): the ImageNet backbones are ~30x the seed CNN's
# arithmetic, so on 2 cores they run small; their targets are GPU targets (--full).
CPU_SIZES = {"seed-cnn": (128, 600), "resnet50": (64, 160), "efficientnet-lite0": (64, 160)}
# Runs start from the whole-image baseline recipe (the set-up the recorded results used): speed, not accuracy.
BASELINE = "student-baseline"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--full", action="store_true",
                   help="GPU sizes: 224 px, batch 256, 12,446 decoded images, all training images, 3 epochs")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--data", default=None, help="class folders of JPEGs for end-to-end training "
                   "(default: the shared ct-kidney copy, else JPEG phantoms)")
    p.add_argument("--train-images", type=int, default=None,
                   help="images linked from --data (default: all with --full, else 600 for seed-cnn, 160 others)")
    p.add_argument("--image-size", type=int, default=None,
                   help="default 224 with --full, else 128 for seed-cnn, 64 for the others")
    p.add_argument("--batch-size", type=int, default=None, help="default 32 (CPU) / 256 (--full)")
    p.add_argument("--epochs", type=int, default=None, help="end-to-end epochs; the first is warm-up (default 3)")
    p.add_argument("--bound-steps", type=int, default=None,
                   help="model-bound steps per timed chunk, best of 3 chunks (default 4 CPU / 50)")
    p.add_argument("--decode-data", default=None, help="JPEG folder for the decode timing "
                   "(default: the shared 512 px sample)")
    p.add_argument("--decode-images", type=int, default=None, help="repeat it to this many (default 200 / 12446)")
    p.add_argument("--decode-size", type=int, default=224)
    p.add_argument("--feature-images", type=int, default=5000, help="feature vectors in the head epoch")
    p.add_argument("--memory-images", type=int, default=0,
                   help="also train seed-cnn 1 epoch at 224 px on this many images in a subprocess, report its RSS")
    p.add_argument("--sections", default=None,
                   help="what to measure: models, decode, head, cv (default: models,decode,head; with --full also cv; "
                        "memory runs when --memory-images is set)")
    p.add_argument("--cv-epochs", type=int, default=None, help="cv section: epochs per fold (default: the recipe's)")
    p.add_argument("--work", default=None, help="scratch folder (default: a temporary one, removed after)")
    args = p.parse_args(argv)
    full = args.full
    args.batch_size = args.batch_size or (256 if full else 32)
    args.epochs = args.epochs or 3
    args.bound_steps = args.bound_steps or (50 if full else 4)
    args.decode_images = args.decode_images or (12446 if full else 200)
    args.sections = args.sections or ("models,decode,head,cv" if full else "models,decode,head")
    return args


FULL_SIZES = (128, 224)  # the sizes on a GPU


def sizes(args, name: str) -> list[tuple[int, int]]:
    """[(image size, images to link; 0: every image once)] to measure a model at."""
    if args.image_size:
        chosen = [args.image_size]
    else:
        chosen = list(FULL_SIZES) if args.full else [CPU_SIZES.get(name, (128, 600))[0]]
    images = 0 if args.full else CPU_SIZES.get(name, (128, 600))[1]
    return [(size, args.train_images if args.train_images is not None else images) for size in chosen]


def link_images(source: Path, out: Path, count: int, classes=("Tumor", "Normal")) -> Path:
    """A class-folder dataset of `count` hard links (copies across file systems) to JPEGs under `source`,
    taken round-robin over the classes and repeated when `count` exceeds what is there (0: each file once).
    Not symlinks: the split file resolves them to paths outside the dataset root."""
    catalogue = build_catalogue(source, [c.lower() for c in classes])
    by_class = [[s.path for s in catalogue.samples if s.label == k] for k in range(len(classes))]
    if count:
        cycles = [itertools.cycle(files) for files in by_class]
        picks = [(i % len(classes), next(cycles[i % len(classes)])) for i in range(count)]
    else:
        picks = [(label, path) for label, files in enumerate(by_class) for path in files]
    for name in catalogue.classes:
        (out / name).mkdir(parents=True, exist_ok=True)
    for i, (label, target) in enumerate(picks):
        link = out / catalogue.classes[label] / f"{i:06d}_{Path(target).name}"
        try:
            os.link(target, link)
        except OSError:
            shutil.copyfile(target, link)
    return out


def class_folders(source: Path) -> tuple[str, ...]:
    """The four Kaggle classes when all are there (the real data), else Tumor and Normal (phantoms)."""
    from kidneyct.errors import DatasetError

    try:
        build_catalogue(source, "all")
        return ("Tumor", "Normal", "Cyst", "Stone")
    except DatasetError:
        return ("Tumor", "Normal")


def jpeg_phantoms(out: Path, n: int) -> Path:
    from PIL import Image

    from kidneyct.synthetic.phantom import generate_dataset

    png = out.parent / (out.name + "-png")
    generate_dataset(png, n=n, seed=0, size=256, classes=["tumor", "normal"], progress=False)
    for path in png.rglob("*.png"):
        if ".mask." in path.name:
            continue
        target = out / path.parent.name / (path.stem + ".jpg")
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.open(path).convert("L").save(target, quality=90)
    shutil.rmtree(png)
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_pressure() -> float | None:
    """Share of the last minute some runnable task waited for a CPU (Linux PSI): other load on the host."""
    try:
        fields = Path("/proc/pressure/cpu").read_text().split()
        return float(next(f for f in fields if f.startswith("avg60=")).split("=")[1])
    except (OSError, StopIteration, ValueError):
        return None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_bound(name: str, size: int, batch: int, steps: int, device: torch.device) -> dict:
    """Training and inference img/s on synthetic tensors already on the device (channels_last, autocast)."""
    config = ModelConfig(name, 2, size, pretrained="none", freeze_backbone=False)
    model = create_model(config).to(device).to(memory_format=torch.channels_last).train()
    optimizer = make_optimizer(model.parameters(), 1e-4, 1e-4)  # what train() uses
    images = torch.rand(batch, 1, size, size, device=device).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 2, (batch,), device=device)

    def step():
        with autocast(device):
            logits = model(images)
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    warmup = max(2, steps // 5)

    def best_rate(run) -> float:
        """img/s of the fastest of 3 timed chunks of `steps` steps (the host may be shared)."""
        for _ in range(warmup):
            run()
        rates = []
        for _ in range(3):
            sync(device)
            started = time.perf_counter()
            for _ in range(steps):
                run()
            sync(device)
            rates.append(batch * steps / (time.perf_counter() - started))
        return max(rates)

    train_rate = best_rate(step)
    model.eval()

    def infer():
        with autocast(device):
            model(images)

    with torch.inference_mode():
        inference_rate = best_rate(infer)
    return {"train_img_s": round(train_rate, 1), "inference_img_s": round(inference_rate, 1)}


def end_to_end(name: str, data: Path, size: int, batch: int, epochs: int, device: torch.device,
               work: Path, cache: Path) -> dict:
    config = recipe_config(BASELINE, str(data), str(work / f"run-{name}"), model=name, classes="tumor,normal",
                           image_size=size, epochs=epochs, batch_size=batch, patience=epochs + 1,
                           device=str(device), pretrained="none", finetune=True, val_fraction=0.1,
                           test_fraction=0.05, progress=False, cache_dir=str(cache))
    started = time.perf_counter()
    result = train(config)
    wall = time.perf_counter() - started
    steady = result.history[1:] or result.history  # the first epoch pays warm-up (cudnn autotune, oneDNN)
    best = max(steady, key=lambda h: h.images_per_second)
    images = result.split_sizes["train"]
    # What the first epoch took beyond a steady one: cuDNN autotuning of new shapes, oneDNN primitive creation.
    warm_up = result.history[0].seconds - statistics.median(h.seconds for h in steady)
    return {"train_images": images, "epochs": epochs, "train_loop_img_s": best.images_per_second,
            "first_epoch_extra_s": round(warm_up, 2),
            "epoch_img_s": [h.images_per_second for h in result.history],
            "run_wall_s": round(wall, 2), "run_wall_img_s": round(images * epochs / wall, 1)}


def measure_model(name: str, size: int, count: int, source: Path, args, device: torch.device, work: Path) -> dict:
    """Model-bound and end-to-end training img/s of one model at one size, and their ratio."""
    data = work / f"data-{name}-{size}"
    if source.is_dir():
        link_images(source, data, count)
    else:
        jpeg_phantoms(data, count or 600)
    bound = model_bound(name, size, args.batch_size, args.bound_steps, device)
    e2e = end_to_end(name, data, size, args.batch_size, args.epochs, device, work, work / "train-cache")
    again = model_bound(name, size, args.batch_size, args.bound_steps, device)
    # Best-of on both sides (chunks before and after; epochs after the first): on a shared host this compares
    # the quiet moments of each rather than whichever was unlucky.
    bound_rate = max(bound["train_img_s"], again["train_img_s"])
    return {"image_size": size, "model_bound_train_img_s": bound_rate,
            "model_bound_inference_img_s": max(bound["inference_img_s"], again["inference_img_s"]),
            "end_to_end": e2e, "ratio_end_to_end_to_model_bound": round(e2e["train_loop_img_s"] / bound_rate, 3)}


def cv_timing(data: Path, args, device: torch.device, work: Path) -> dict:
    """Wall time of `kidneyct cv` with the default recipe, 5 folds (Tumor vs Normal), as a user runs it."""
    overrides = {"epochs": args.cv_epochs} if args.cv_epochs else {}
    config = recipe_config(DEFAULT_RECIPE, str(data), str(work / "cv"), device=str(device), progress=False,
                           cache_dir=str(work / "cv-cache"), **overrides)
    started = time.perf_counter()
    result = cross_validate(CVConfig(config, folds=5, bootstrap=200))
    return {"recipe": DEFAULT_RECIPE, "epochs": config.epochs, "folds": 5, "images": len(result.fold_of),
            "seconds": round(time.perf_counter() - started, 1), "fold_seconds": [f["seconds"] for f in result.folds]}


def frozen_run(data: Path, args, device: torch.device, work: Path) -> dict:
    """The seed's set-up: frozen ResNet50, head trained on cached features (one backbone pass + 4 views)."""
    config = recipe_config(BASELINE, str(data), str(work / "run-frozen"), model="resnet50", classes="tumor,normal",
                           epochs=10, batch_size=args.batch_size, patience=11, device=str(device), pretrained="none",
                           progress=False, cache_dir=str(work / "train-cache"))
    started = time.perf_counter()
    result = train(config)
    return {"train_images": result.split_sizes["train"], "feature_seconds": round(result.feature_seconds, 2),
            "head_epoch_s": [h.seconds for h in result.history], "run_wall_s": round(time.perf_counter() - started, 2)}


def decode_timing(source: Path, count: int, size: int, device: torch.device, work: Path) -> dict:
    folder = link_images(source, work / "decode-data", count, classes=class_folders(source))
    samples = build_catalogue(folder, "all").samples
    from kidneyct.preprocess import Preprocessing

    prep = Preprocessing(size)
    settings = CacheSettings(folder=str(work / "decode-cache"))
    jpeg_device = device if device.type == "cuda" else None
    started = time.perf_counter()
    cold = decode_samples(samples, prep, progress=False, cache=settings, jpeg_device=jpeg_device)
    cold_s = time.perf_counter() - started
    started = time.perf_counter()
    warm = decode_samples(samples, prep, progress=False, cache=settings, jpeg_device=jpeg_device)
    warm_s = time.perf_counter() - started
    assert warm.from_cache and not cold.from_cache
    return {"source": str(source), "images": len(samples), "size": size,
            "decoder": "torchvision/nvjpeg" if jpeg_device is not None else f"Pillow, {default_workers()} processes",
            "cold_decode_s": round(cold_s, 3), "cold_img_s": round(len(samples) / cold_s, 1),
            "warm_load_s": round(warm_s, 3), "cache_mib": round(cold.images.nbytes / 2**20, 1)}


def head_epoch(n: int, batch: int, device: torch.device) -> dict:
    """One epoch of the frozen-ResNet50 head over n cached 2048-d feature vectors (the library's loop)."""
    model = create_model(ModelConfig("resnet50", 2, 224, pretrained="none")).to(device)  # frozen backbone
    head = model.head.train()
    features = torch.randn(5, n, 2048, device=device)  # 1 plain + 4 augmented views, as the default
    labels = torch.randint(0, 2, (n,), device=device)
    optimizer = make_optimizer(head.parameters(), 1e-3, 1e-4)
    steps = -(-n // batch)
    scheduler = cosine_with_warmup(optimizer, 2 * steps, steps)
    weights = torch.ones(2, device=device)
    seconds = []
    for epoch in range(4):  # the first warms up; the best of the rest, the host being shared
        generator = torch.Generator(device=device).manual_seed(epoch)
        order = torch.randperm(n, generator=generator, device=device)
        sync(device)
        started = time.perf_counter()
        run_epoch(head, FeatureInputs(features), labels, weights, optimizer, scheduler, order, batch, generator,
                  DistContext(device=device), device)
        sync(device)
        seconds.append(time.perf_counter() - started)
    return {"feature_vectors": n, "views": len(features), "batch_size": batch,
            "epoch_s": round(min(seconds[1:]), 3), "epoch_s_all": [round(s, 3) for s in seconds]}


def memory_check(source: Path, count: int, work: Path) -> dict:
    """Peak RSS of `kidneyct train` (seed-cnn, 224 px, 1 epoch, CPU) on `count` images, in its own process."""
    data = link_images(source, work / "memory-data", count, classes=class_folders(source))
    code = (
        "import json, resource, sys, time\n"
        "from kidneyct.config import recipe_config\n"
        "from kidneyct.training.train import train\n"
        "t = time.perf_counter()\n"
        f"r = train(recipe_config({BASELINE!r}, {str(data)!r}, {str(work / 'memory-run')!r}, "
        f"classes={','.join(class_folders(source)).lower()!r}, "
        f"image_size=224, epochs=1, device='cpu', progress=False, "
        f"cache_dir={str(work / 'memory-cache')!r}))\n"
        "print(json.dumps({'train_images': r.split_sizes['train'], 'wall_s': round(time.perf_counter() - t, 1), "
        "'peak_rss_mib': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), "
        "'decode_workers_peak_rss_mib': round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {"images": count, "size": 224, **json.loads(run.stdout.strip().splitlines()[-1])}


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    device = resolve_device(args.device)
    configure_backend(device)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="kidneyct-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    cpu_name = f"cpu: {cpu_model()}"
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name,
        "cpu_threads": cpu_threads(), "cpu_count": os.cpu_count(),
        "host_load_at_start": {"load_average_1min": round(os.getloadavg()[0], 2), "cpu_pressure_avg60": cpu_pressure()},
        "torch": torch.__version__, "python": platform.python_version(),
        "settings": {"batch_size": args.batch_size, "epochs": args.epochs,
                     "bound_steps": args.bound_steps, "bf16_autocast": device.type == "cuda",
                     "channels_last": True, "cudnn_benchmark": device.type == "cuda"},
    }
    try:
        source = Path(args.data) if args.data else SHARED / "ct-kidney"
        report["end_to_end_data"] = str(source) if source.is_dir() else "<JPEG phantoms>"
        sections = set(args.sections.split(","))
        report["models"] = {}
        for name in args.models.split(",") if "models" in sections else []:
            for size, count in sizes(args, name):
                key = name if len(sizes(args, name)) == 1 else f"{name}@{size}"
                report["models"][key] = measure_model(name, size, count, source, args, device, work)
        if args.full and "models" in sections:
            resnet_data = work / f"data-resnet50-{sizes(args, 'resnet50')[0][0]}"
            report["frozen_resnet50_end_to_end"] = frozen_run(resnet_data, args, device, work)
        if "cv" in sections:
            report["cv_default_recipe"] = cv_timing(source if source.is_dir() else jpeg_phantoms(work / "cv-data", 600),
                                                    args, device, work)
        decode_source = Path(args.decode_data) if args.decode_data else SHARED / "ct-kidney-512-sample"
        if not decode_source.is_dir():
            decode_source = jpeg_phantoms(work / "decode-phantoms", 200)
        if "decode" in sections:
            report["decode"] = decode_timing(decode_source, args.decode_images, args.decode_size, device, work)
        if "head" in sections:
            report["frozen_resnet50_head"] = head_epoch(args.feature_images, 32, device)
        if args.memory_images:
            memory_source = source if source.is_dir() else jpeg_phantoms(work / "memory-phantoms", 600)
            report["memory_check"] = memory_check(memory_source, args.memory_images, work)
        report["host_load_at_end"] = {"load_average_1min": round(os.getloadavg()[0], 2),
                                      "cpu_pressure_avg60": cpu_pressure()}
        # This process builds every model in turn; the memory target is memory_check's training process.
        report["benchmark_peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        report["children_peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
        if device.type == "cuda":
            report["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
