"""The built-in default job: phantoms -> train seed-cnn (Tumor vs Normal) -> evaluate -> report."""

from __future__ import annotations

import logging
from pathlib import Path

from typing import TYPE_CHECKING

from kidneyct.config import recipe_config

if TYPE_CHECKING:  # the CLI reads the defaults below without importing torch
    from kidneyct.experiments.evaluate import EvaluationResult

log = logging.getLogger(__name__)


# Sized so that seed-cnn clears 90% test accuracy on held-out phantom series and the whole job stays
# under 10 minutes on 2 CPU cores: 3,200 slices rendered at 160 px, trained at 96 px.
DEMO_N, DEMO_EPOCHS, DEMO_IMAGE_SIZE, DEMO_PHANTOM_SIZE = 3200, 30, 96, 160


def run_demo(out: Path, n: int = DEMO_N, epochs: int = DEMO_EPOCHS, image_size: int = DEMO_IMAGE_SIZE,
             device: str = "auto", seed: int = 0, phantom_size: int = DEMO_PHANTOM_SIZE) -> "EvaluationResult":
    # Imported here for start-up speed: the CLI reads the defaults above to build its parser.
    from kidneyct.experiments.evaluate import evaluate
    from kidneyct.synthetic.phantom import MANIFEST, generate_dataset
    from kidneyct.training.train import train

    data = out / "phantoms"
    if not (data / MANIFEST).exists():
        log.info("generating %d synthetic phantom slices in %s", n, data)
        # Short series (1-4 slices) give several hundred independent phantom patients.
        generate_dataset(data, n=n, seed=seed, size=phantom_size, classes=["Tumor", "Normal"],
                         slices_per_series=(1, 4))
    # The student baseline (seed-cnn, whole image), not the cross-validated default recipe: synthetic
    # phantoms have no scanner confounds to crop away, and the demo numbers in docs/installation.md were measured so.
    config = recipe_config("student-baseline", str(data), str(out / "seed-cnn"), classes="tumor,normal",
                           image_size=image_size, epochs=epochs, patience=epochs, seed=seed, device=device)
    result = train(config)
    return evaluate(result.best_checkpoint, out=out / "report", device=device)
