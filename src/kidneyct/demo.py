"""The built-in default job: phantoms -> train seed-cnn (Tumor vs Normal) -> evaluate -> report."""

from __future__ import annotations

import logging
from pathlib import Path

from kidneyct.data.phantom import MANIFEST, generate_dataset
from kidneyct.evaluate import EvaluationResult, evaluate
from kidneyct.train import TrainConfig, train

log = logging.getLogger(__name__)


def run_demo(out: Path, n: int = 1600, epochs: int = 30, image_size: int = 128, device: str = "auto",
             seed: int = 0) -> EvaluationResult:
    data = out / "phantoms"
    if not (data / MANIFEST).exists():
        log.info("generating %d synthetic phantom slices in %s", n, data)
        # Short series (1-4 slices) give several hundred independent phantom patients.
        generate_dataset(data, n=n, seed=seed, classes=["Tumor", "Normal"], slices_per_series=(1, 4))
    config = TrainConfig(data=str(data), out=str(out / "seed-cnn"), model="seed-cnn", classes="tumor,normal",
                         image_size=image_size, epochs=epochs, patience=epochs, seed=seed, device=device)
    result = train(config)
    return evaluate(result.best_checkpoint, out=out / "report", device=device)
