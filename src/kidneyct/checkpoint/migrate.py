"""Checkpoints of earlier schemas read as today's: a payload dict of any version becomes the dict of
SCHEMA_VERSION that `Checkpoint.from_dict` reads. One function per step, so that a file of any age goes
through every step after it.

Version 1 (kidneyct 0.1): one flat dict (model_config, calibration, threshold, operating_point, study_rule,
scope, intensity, train_config, data, epoch ... history, optimizer, scheduler); the ONNX exports of that time
carry the same keys in their metadata, without the weights.
"""

from __future__ import annotations

from kidneyct.checkpoint.schema import FORMAT, SCHEMA_VERSION
from kidneyct.errors import CheckpointError
from kidneyct.study.settings import LEGACY_SETTINGS

_PROGRESS = ("epoch", "best_score", "best_epoch", "stale_epochs", "stopped_early", "history")
_TRAINING = ("train_config", "data", "augmentation", "acquisition", "synthetic_lesions", *_PROGRESS)


def current_payload(payload: dict, source: object) -> dict:
    """`payload` (a checkpoint's or an ONNX export's metadata, of any schema version) as today's dict."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{source}: not a kidneyct checkpoint (missing format marker {FORMAT!r})")
    version = payload.get("version", 1)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise CheckpointError(f"{source}: written by a newer kidneyct (format version {version}); upgrade kidneyct")
    values = dict(payload)
    if version < 2:
        for key in ("classes", "model_config", "preprocessing"):
            if key not in values:
                raise CheckpointError(f"{source}: incomplete checkpoint (no {key!r})")
        values = from_version_1(values)
    values.pop("format", None)
    values.pop("version", None)
    return values


def from_version_1(old: dict) -> dict:
    """A version-1 flat dict as a version-2 one."""
    calibration = dict(old.get("calibration") or {})
    scope = old.get("scope") or {}
    threshold, point = old.get("threshold"), old.get("operating_point")
    new = {
        "kidneyct_version": old.get("kidneyct_version", "0.1.0"),
        "model": old["model_config"], "classes": old["classes"], "preprocessing": old["preprocessing"],
        "state_dict": old.get("state_dict", {}),
        "calibration": _calibration(calibration),
        "operating_point": _operating_point(threshold, point),
        "study": {"rule": old.get("study_rule") or LEGACY_SETTINGS.rule.to_dict(),
                  "scope": scope.get("settings") or {}, "features": scope.get("features"),
                  "intensity": old.get("intensity")},
        "members": [{"model": m["model_config"], "temperature": m.get("temperature", 1.0),
                     "source": m.get("source", ""), "best_epoch": m.get("best_epoch")}
                    for m in old.get("members", [])],
    }
    if any(key in old for key in _TRAINING):
        new["training"] = {
            "config": old.get("train_config"), "data": old.get("data") or {},
            "augmentation": old.get("augmentation"), "acquisition": old.get("acquisition"),
            "synthetic_lesions": old.get("synthetic_lesions"),
            "progress": {key: old[key] for key in _PROGRESS if old.get(key) is not None},
        }
    if "optimizer" in old:
        new["resume"] = {"optimizer": old["optimizer"], "scheduler": old.get("scheduler", {})}
    return new


def _calibration(old: dict) -> dict:
    new = {key: old[key] for key in ("temperature", "method", "kept", "at_bound") if key in old}
    new["fitted_temperature"] = old.get("nll_optimal_temperature")
    if "val_ece_before" in old:
        new["validation"] = {key[len("val_"):]: value for key, value in old.items() if key.startswith("val_")}
        new["validation"].setdefault("ece_bins", old.get("ece_bins", 15))
    return new


def _operating_point(threshold: float | None, point: dict | None) -> dict | None:
    if threshold is None:
        return None
    if not point:  # an ensemble's mean threshold, or one written without its method
        return {"threshold": threshold, "method": "recorded without how it was chosen"}
    return {**{k: v for k, v in point.items() if k != "class"}, "tumor_class": point.get("class"),
            "threshold": threshold}
