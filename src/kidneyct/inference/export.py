"""ONNX export with the checkpoint's inference metadata embedded (run by `OnnxPredictor` in predictor.py).

The exported graph maps the standardised float input [B, 1, S, S] to logits, with a dynamic batch
axis. Everything around it (reading, windowing, resizing, standardising, flip TTA, temperature,
threshold) stays in Python and comes from the metadata, so both backends share one `Preprocessing`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from kidneyct.about import DISCLAIMER, __version__
from kidneyct.models.checkpoint import load_model

log = logging.getLogger(__name__)

METADATA_KEY = "kidneyct"
INPUT_NAME, OUTPUT_NAME = "image", "logits"
FORMATS = ("onnx",)


def inference_metadata(loaded) -> dict:
    """What a runtime needs besides the graph: classes, preprocessing, calibration, threshold, study rule."""
    payload = loaded.payload
    return {
        "kidneyct_version": __version__, "classes": loaded.classes,
        "preprocessing": loaded.preprocessing.to_dict(), "model_config": loaded.model_config.to_dict(),
        "calibration": payload.get("calibration") or {"temperature": loaded.temperature},
        "threshold": loaded.threshold, "operating_point": payload.get("operating_point"),
        # The study rule, the scope gate's settings and the intensity profile; not the feature statistics,
        # which need the penultimate layer the graph does not expose.
        "study_rule": payload.get("study_rule"), "intensity": payload.get("intensity"),
        "scope": {"settings": (payload.get("scope") or {}).get("settings")},
        "input": {"name": INPUT_NAME, "layout": "NCHW", "dtype": "float32",
                  "meaning": "uint8 slice / 255, then (x - mean) / std from preprocessing"},
        "output": {"name": OUTPUT_NAME, "meaning": "logits; probabilities = softmax(logits / temperature)"},
        "disclaimer": DISCLAIMER,
    }


def export_onnx(checkpoint: str | Path, out: str | Path, opset: int | None = None) -> Path:
    """Write `out` (a single .onnx file, weights inside) with a dynamic batch axis and metadata."""
    import onnx  # imported here for start-up speed, as onnxruntime below: only exports need it

    loaded = load_model(checkpoint, "cpu")
    model = loaded.model.eval()
    size = loaded.preprocessing.image_size
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, 1, size, size)  # batch 2: a batch of 1 would be specialised away
    torch.onnx.export(model, (example,), str(out), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                      dynamic_shapes=({0: torch.export.Dim("batch")},), opset_version=opset,
                      external_data=False, verbose=False)
    graph = onnx.load(str(out))
    del graph.metadata_props[:]
    entry = graph.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(inference_metadata(loaded))
    graph.doc_string = f"kidneyct {loaded.model_config.name} from {Path(checkpoint).name}. {DISCLAIMER}"
    onnx.checker.check_model(graph)
    onnx.save(graph, str(out))
    return out
