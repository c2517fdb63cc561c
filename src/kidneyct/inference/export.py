"""ONNX export with the checkpoint's inference metadata embedded, and an onnxruntime predictor.

The exported graph maps the standardised float input [B, 1, S, S] to logits, with a dynamic batch
axis. Everything around it (reading, windowing, resizing, standardising, temperature, threshold)
stays in Python and comes from the metadata, so both backends share one `Preprocessing`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from kidneyct.about import DISCLAIMER, __version__
from kidneyct.errors import CheckpointError
from kidneyct.models.checkpoint import load_model
from kidneyct.preprocess import Preprocessing

log = logging.getLogger(__name__)

METADATA_KEY = "kidneyct"
INPUT_NAME, OUTPUT_NAME = "image", "logits"
FORMATS = ("onnx",)


def inference_metadata(loaded) -> dict:
    """What a runtime needs besides the graph: classes, preprocessing, calibration, threshold."""
    payload = loaded.payload
    return {
        "kidneyct_version": __version__, "classes": loaded.classes,
        "preprocessing": loaded.preprocessing.to_dict(), "model_config": loaded.model_config.to_dict(),
        "calibration": payload.get("calibration") or {"temperature": loaded.temperature},
        "threshold": loaded.threshold, "operating_point": payload.get("operating_point"),
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


class OnnxPredictor:
    """The Predictor interface over an onnxruntime session of an exported model."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort  # imported here for start-up speed: only the ONNX backend needs it

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: ONNX model not found")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:
            raise CheckpointError(f"{path}: not a loadable ONNX model ({type(error).__name__}: {error})") from None
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if raw is None:
            raise CheckpointError(f"{path}: no kidneyct metadata; export it with `kidneyct export`")
        self.path = path
        self.metadata = json.loads(raw)
        self.classes: list[str] = list(self.metadata["classes"])
        self.preprocessing = Preprocessing.from_dict(self.metadata["preprocessing"])
        self.temperature = float(self.metadata["calibration"].get("temperature", 1.0))
        self.threshold: float | None = self.metadata.get("threshold")

    def logits_uint8(self, images: np.ndarray, batch_size: int = 256) -> torch.Tensor:
        outputs = []
        for start in range(0, len(images), batch_size):
            batch = self.preprocessing.batch_to_tensor(images[start:start + batch_size]).numpy()
            logits = self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
            if self.preprocessing.tta_hflip:  # the same flip averaging as predict_logits
                mirrored = np.ascontiguousarray(batch[..., ::-1])
                logits = (logits + self.session.run([OUTPUT_NAME], {INPUT_NAME: mirrored})[0]) / 2
            outputs.append(logits)
        if not outputs:
            return torch.zeros((0, len(self.classes)))
        return torch.from_numpy(np.concatenate(outputs)).float()

    def probabilities_from_logits(self, logits: torch.Tensor) -> np.ndarray:
        return torch.softmax(logits / self.temperature, dim=1).numpy()
