"""What a checkpoint says about itself: the model, the data and split it was trained on, how it scored on
validation (and on test when `kidneyct evaluate` left its metrics beside it). Read by the web API's model
card and written into DICOM results, so a reader of either learns how far the numbers can be trusted."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from kidneyct.about import __version__

VALIDATION_KEYS = ("epoch", "val_loss", "val_accuracy", "val_macro_f1")


def best_validation(history: list[dict], best_epoch: int | None) -> dict | None:
    """The validation metrics of the epoch that was kept.

    Args:
        history: the checkpoint's per-epoch rows.
        best_epoch: the epoch `best.pt` was saved at.

    Returns:
        {epoch, val_loss, val_accuracy, val_macro_f1} (those present), or None.
    """
    for row in history or []:
        if row.get("epoch") == best_epoch:
            return {k: row[k] for k in VALIDATION_KEYS if k in row}
    return None


def held_out_metrics(checkpoint: str | Path) -> dict | None:
    """The test metrics `kidneyct evaluate` wrote beside the run (report/metrics.json).

    Args:
        checkpoint: the checkpoint file.

    Returns:
        {"split": ..., "metrics": {name: value}}, or None when there is no (readable) report.
    """
    report = Path(checkpoint).parent / "report" / "metrics.json"
    if not report.is_file():
        return None
    try:
        metrics = json.loads(report.read_text())
    except (OSError, ValueError):
        return None
    return {"split": metrics.get("split"),
            "metrics": {k: v["value"] for k, v in (metrics.get("metrics") or {}).items()
                        if isinstance(v, dict) and isinstance(v.get("value"), (int, float))}}


def _validation_statement(payload: dict, checkpoint: Path) -> str:
    data = payload.get("data") or {}
    sizes = data.get("split_sizes") or {}
    dataset = Path(str(data.get("root", ""))).name or "an unnamed dataset"
    kind = "synthetic phantoms" if data.get("synthetic") else "real CT images"
    parts = [f"Trained on {dataset} ({kind}), {data.get('split_kind', 'unknown')} split, seed "
             f"{data.get('split_seed')}; slices train/val/test {sizes.get('train')}/{sizes.get('val')}/"
             f"{sizes.get('test')}."]
    val = best_validation(payload.get("history", []), payload.get("best_epoch"))
    if val:
        parts.append(f"Validation at the kept epoch {val.get('epoch')}: accuracy {val.get('val_accuracy', float('nan')):.3f},"
                     f" macro-F1 {val.get('val_macro_f1', float('nan')):.3f}.")
    test = held_out_metrics(checkpoint)
    if test and test["metrics"]:
        shown = {k: v for k, v in test["metrics"].items() if k in ("balanced_accuracy", "tumor_sensitivity",
                                                                     "tumor_specificity", "roc_auc")}
        parts.append(f"Held-out {test['split']} split: " + ", ".join(f"{k} {v:.3f}" for k, v in shown.items()) + ".")
    else:
        parts.append("No held-out test evaluation is stored beside this checkpoint.")
    if data.get("split_kind") == "random":
        parts.append("A random image split leaks near-duplicate slices between train and test: its scores are optimistic.")
    return " ".join(parts)


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
    def from_loaded(cls, loaded, checkpoint: str | Path) -> "ModelFacts":
        """Facts of a checkpoint loaded by `kidneyct.models.checkpoint.load_model`.

        Args:
            loaded: the LoadedModel (a Predictor's `.loaded`).
            checkpoint: the file it was loaded from.

        Returns:
            The ModelFacts.
        """
        checkpoint = Path(checkpoint)
        digest = hashlib.sha256()
        with open(checkpoint, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        payload = loaded.payload
        return cls(loaded.model_config.name, checkpoint.name, digest.hexdigest(),
                   str(payload.get("kidneyct_version", __version__)), tuple(loaded.classes), float(loaded.temperature),
                   _validation_statement(payload, checkpoint))
