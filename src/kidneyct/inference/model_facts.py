"""What a checkpoint says about itself, in the words every output uses: the model, the data and split it was
trained on, how it scored on validation (and on test when `kidneyct evaluate` left its metrics beside it, or as
its model card records). The web API's model card, the study report and the DICOM results all read it here, so
a reader of any of them learns how far the numbers can be trusted."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from kidneyct.about import DISCLAIMER
from kidneyct.checkpoint import Checkpoint
from kidneyct.run_folder import RunFolder

VALIDATION_KEYS = ("epoch", "val_loss", "val_accuracy", "val_macro_f1")
SHOWN_TEST_METRICS = ("balanced_accuracy", "tumor_sensitivity", "tumor_specificity", "roc_auc")


def held_out_metrics(checkpoint_file: str | Path) -> dict | None:
    """The test metrics `kidneyct evaluate` wrote beside the run (report/metrics.json).

    Returns:
        {"split": ..., "metrics": {name: value}, "series_roc_auc": ...}, or None when there is no (readable) report.
    """
    report = RunFolder.of(checkpoint_file).report_metrics
    if not report.is_file():
        return None
    try:
        metrics = json.loads(report.read_text())
    except (OSError, ValueError):
        return None
    series_auc = ((metrics.get("series_metrics") or {}).get("roc_auc_tumor") or {}).get("value")
    return {"split": metrics.get("split"), "series_roc_auc": series_auc,
            "metrics": {k: v["value"] for k, v in (metrics.get("metrics") or {}).items()
                        if isinstance(v, dict) and isinstance(v.get("value"), (int, float))}}


def _trained_on(checkpoint: Checkpoint) -> str:
    data, sizes = checkpoint.data, checkpoint.data.split_sizes
    kind = "SYNTHETIC phantoms" if data.synthetic else "real CT images"
    return (f"Trained on {data.name} ({kind}), {data.split_kind} split, seed {data.split_seed}; slices "
            f"train/val/test {sizes.get('train')}/{sizes.get('val')}/{sizes.get('test')}.")


def validation_lines(checkpoint: Checkpoint, checkpoint_file: str | Path) -> list[str]:
    """How the model was trained and validated, one sentence a line: its model card's numbers when it has one,
    else its training record and the evaluation left beside it."""
    lines = [f"Model {checkpoint.model.name} from {Path(checkpoint_file).name}. {_trained_on(checkpoint)}"]
    kept = checkpoint.progress.kept_epoch()
    if kept is not None:
        lines.append(f"Validation at the kept epoch {kept.epoch}: accuracy {kept.val_accuracy:.3f}, macro-F1 "
                     f"{kept.val_macro_f1:.3f} (per slice).")
    point = checkpoint.operating_point
    if point is not None and point.val_sensitivity is not None:
        lines.append(f"Operating point: {point.method}; on validation sensitivity {point.val_sensitivity:.3f}, "
                     f"specificity {point.val_specificity:.3f}.")
    if checkpoint.model_card is not None:
        lines += [_card_line(v) for v in checkpoint.model_card.validation]
    else:
        lines.append(_held_out_line(checkpoint_file))
    if checkpoint.data.split_kind == "random":
        lines.append("A random image split leaks near-duplicate slices between train and test: its scores are "
                     "optimistic.")
    return lines


def _card_line(validation) -> str:
    numbers = ", ".join(f"{name} {value:.3f}" for name, value in validation.metrics.items())
    return f"{validation.source}, {validation.split} (per {validation.unit}, n={validation.n}): {numbers}."


def _held_out_line(checkpoint_file: str | Path) -> str:
    test = held_out_metrics(checkpoint_file)
    if not test or not test["metrics"]:
        return "No held-out test evaluation is stored beside this checkpoint."
    shown = ", ".join(f"{k} {v:.3f}" for k, v in test["metrics"].items() if k in SHOWN_TEST_METRICS)
    series = f"; per series ROC-AUC {test['series_roc_auc']:.3f}" if test["series_roc_auc"] is not None else ""
    return f"Held-out {test['split']} split (kidneyct evaluate): {shown}{series}."


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelFacts:
    """The model behind a result: what DICOM results and reports name and state about it."""

    name: str  # registered architecture, e.g. seed-cnn
    checkpoint: str  # file name only: results must not leak the server's paths
    sha256: str
    trained_with: str  # the kidneyct version that wrote the checkpoint
    classes: tuple[str, ...]
    temperature: float
    validation: str  # one paragraph: data, split, validation and test numbers

    @classmethod
    def of(cls, checkpoint: Checkpoint, checkpoint_file: str | Path) -> "ModelFacts":
        """Facts of `checkpoint`, read from `checkpoint_file` (a .pt or an .onnx export)."""
        return cls(checkpoint.model.name, Path(checkpoint_file).name, file_sha256(checkpoint_file),
                   checkpoint.kidneyct_version, tuple(checkpoint.classes), checkpoint.temperature,
                   " ".join(validation_lines(checkpoint, checkpoint_file)))


def model_card(checkpoint: Checkpoint, checkpoint_file: str | Path, description: str | None = None) -> dict:
    """What the model is, what it was trained and evaluated on, and what it is not (the web API's /model)."""
    data, kept, card = checkpoint.data, checkpoint.progress.kept_epoch(), checkpoint.model_card
    return {
        "name": Path(checkpoint_file).name,
        "kidneyct_version": checkpoint.kidneyct_version,
        "classes": list(checkpoint.classes),
        "architecture": {"model": checkpoint.model.name, "description": description, **checkpoint.model.to_dict()},
        "outputs": checkpoint.outputs.to_dict(),
        "preprocessing": checkpoint.preprocessing.to_dict(),
        "training_data": {"dataset": data.name, "synthetic": data.synthetic, "split_kind": data.split_kind,
                          "split_seed": data.split_seed, "split_sizes": data.split_sizes,
                          "sources": [s.to_dict() for s in checkpoint.sources]},
        "training": {"epoch_saved": checkpoint.progress.epoch, "best_epoch": checkpoint.progress.best_epoch,
                     "stopped_early": checkpoint.progress.stopped_early},
        "evaluation": {
            "validation_at_best_epoch": None if kept is None else {k: asdict(kept)[k] for k in VALIDATION_KEYS},
            "calibration": {k: v for k, v in checkpoint.calibration.to_dict().items()
                            if isinstance(v, (int, float, str, bool))},
            "operating_point": None if checkpoint.operating_point is None else checkpoint.operating_point.to_dict(),
            "test": held_out_metrics(checkpoint_file),
            "per_source": [] if card is None else [v.to_dict() for v in card.validation],
        },
        "threshold": checkpoint.threshold,
        "weights_licence": None if card is None else card.weights_licence,
        "disclaimer": DISCLAIMER,
        "intended_use": card.intended_use if card is not None else
        "research and teaching on CT slices; not for diagnosis, treatment or triage",
    }
