"""A finished fold of `kidneyct cv`, kept beside its checkpoint so that `cv --resume` reuses it.

A cross-validation takes hours on a CPU and sessions end abruptly; adding repeats to a finished run should not
train its first repeat again. A fold is reused only when it was trained with the same settings (runtime ones
aside) and tested on exactly the same images, so a resumed run reports what an uninterrupted one would. A setting
added to kidneyct after a fold was stored matches it at its default: new options are built so that their default
trains as before. A fold killed mid-training continues from its last.pt when its settings and split are the same.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

import numpy as np

from kidneyct.checkpoint import read_checkpoint
from kidneyct.config import RUNTIME_FIELDS, TrainConfig
from kidneyct.io.atomic import atomic_write
from kidneyct.run_folder import RunFolder

FOLD_RESULT = "fold-result.json"
FOLD_MASKS = "fold-masks.npz"  # a segmenting model's predicted label maps of the test slices

log = logging.getLogger(__name__)


@dataclass
class FoldResult:
    """What a fold gives the cross-validation: its metrics row, its test probabilities and its checkpoint (and a
    segmenting model's predicted label maps of the test slices)."""

    row: dict
    probs: np.ndarray  # float [test images, classes]
    checkpoint: Path
    masks: np.ndarray | None = None  # uint8 [test images, S, S]
    # float [test images]: the overview's kidney share of each body view, what a segmenting model's scope gate
    # compares with its min_kidney_fraction (None: not a segmenting model, or a fold stored before it was kept)
    kidney_fraction: np.ndarray | None = None


def fold_identity(config: TrainConfig, test_keys: list[str]) -> dict:
    """What makes two folds the same experiment: the training settings (not where or how fast they ran) and
    the images tested."""
    settings = {k: v for k, v in config.to_dict().items() if k not in (*RUNTIME_FIELDS, "out", "data")}
    digest = hashlib.sha256("\n".join(test_keys).encode("utf-8", "surrogateescape")).hexdigest()
    return {"settings": settings, "test_images": len(test_keys), "test_sha256": digest}


def same_experiment(stored: dict, identity: dict) -> bool:
    """Whether a stored fold identity is `identity`, reading settings the stored one lacks (added to kidneyct since)
    as matching where `identity` holds their default."""
    current = json.loads(json.dumps(identity))
    defaults = json.loads(json.dumps({f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}))
    settings, known = current.get("settings", {}), stored.get("settings", {})
    added = {name for name, value in settings.items()
             if name not in known and name in defaults and value == defaults[name]}
    current["settings"] = {name: value for name, value in settings.items() if name not in added}
    return stored == current


def interrupted_training(config: TrainConfig, split_unchanged: bool) -> bool:
    """Whether the fold folder `config.out` holds this fold's training cut short (a fold takes a quarter of an
    hour on a CPU): a last.pt with training state, trained with the same settings (runtime ones aside) on the
    same split file (`split_unchanged`: its rows as written now)."""
    last = RunFolder(config.out).last
    if not (split_unchanged and last.exists()):
        return False
    try:
        previous = read_checkpoint(last)
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        log.warning("%s: unreadable (%s); training the fold from its start", last, error)
        return False
    if previous.resume is None or previous.training is None or previous.training.config is None:
        return False
    if not same_experiment(fold_identity(previous.training.config, []), fold_identity(config, [])):
        log.warning("%s: trained with other settings; training the fold from its start", last)
        return False
    return True


def save_fold(folder: Path, identity: dict, result: FoldResult) -> None:
    """Write the fold's result atomically (a killed run leaves no half-written record to reuse); the masks
    first, so a record never points at missing ones."""
    if result.masks is not None:
        atomic_write(folder / FOLD_MASKS, lambda stream: np.savez_compressed(stream, masks=result.masks))
    shares = None if result.kidney_fraction is None else np.asarray(result.kidney_fraction).tolist()
    payload = {"identity": identity, "row": result.row, "probs": np.asarray(result.probs).tolist(),
               "checkpoint": Path(result.checkpoint).name, "masks": result.masks is not None,
               "kidney_fraction": shares}
    atomic_write(folder / FOLD_RESULT, lambda stream: stream.write(json.dumps(payload)), binary=False)


def load_fold(folder: Path, identity: dict) -> FoldResult | None:
    """The fold's stored result when it matches `identity` and its checkpoint is still there, else None
    (with the reason logged)."""
    path = folder / FOLD_RESULT
    if not path.exists():
        return None
    try:
        payload = json.loads(path.read_text())
        stored, checkpoint = payload["identity"], folder / payload["checkpoint"]
        probs = np.asarray(payload["probs"], dtype=np.float64)
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.warning("%s: unreadable (%s); training the fold again", path, error)
        return None
    if not same_experiment(stored, identity):
        log.warning("%s: trained with other settings or tested on other images; training the fold again", path)
        return None
    if not checkpoint.exists() or probs.shape[0] != identity["test_images"]:
        log.warning("%s: its checkpoint or probabilities are missing; training the fold again", path)
        return None
    masks = None
    if payload.get("masks"):
        try:
            with np.load(folder / FOLD_MASKS) as stored_masks:
                masks = stored_masks["masks"]
        except (OSError, ValueError, KeyError) as error:
            log.warning("%s: its masks are unreadable (%s); training the fold again", path, error)
            return None
    kidney_fraction = payload.get("kidney_fraction")
    return FoldResult(payload["row"], probs, checkpoint, masks,
                      None if kidney_fraction is None else np.asarray(kidney_fraction, dtype=np.float64))
