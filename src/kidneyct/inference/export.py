"""ONNX export with the checkpoint embedded as metadata (run by `OnnxBackend` in backends.py).

The exported graph maps the standardised float input [B, 1, S, S] to the logits and the features the final
Linear layer sees (the scope gate's; a model whose final Linear is not its last step exports logits alone), with a
dynamic batch axis. A segmenting model (`checkpoint.outputs.segmentation`) exports its `segment`: a crop of the
body view [B, 1, W, W] in [0, 1] (W its work size) to the logits and the kidney and tumor logit maps, which the
ONNX backend runs through the same two looks as PyTorch (kidneyct.models.look_twice). Everything around it (reading, windowing, resizing, standardising, flip TTA, temperature,
threshold, scope, study rule) stays in Python and comes from the metadata: the checkpoint without its weights.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import replace
from pathlib import Path

import torch

from kidneyct.about import DISCLAIMER
from kidneyct.checkpoint import Checkpoint
from kidneyct.checkpoint.model import load_model
from kidneyct.inference.backends import FEATURES_NAME, INPUT_NAME, MAPS_NAME, METADATA_KEY, OUTPUT_NAME
from kidneyct.models.forward import last_linear

log = logging.getLogger(__name__)

FORMATS = ("onnx",)


class WithFeatures(torch.nn.Module):
    """A model as two outputs: its logits and the input of its final Linear layer (the features)."""

    def __init__(self, model: torch.nn.Module, linear: torch.nn.Linear):
        super().__init__()
        self.body, self.linear = copy.deepcopy(model), linear
        name = next(n for n, m in model.named_modules() if m is linear)
        parent, _, leaf = name.rpartition(".")
        setattr(self.body.get_submodule(parent) if parent else self.body, leaf, torch.nn.Identity())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return self.linear(features), features


class Segmenting(torch.nn.Module):
    """A segmenting model's `segment` as its forward: (logits, map logits)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.segment(x)


def exported_module(model: torch.nn.Module, example: torch.Tensor) -> tuple[torch.nn.Module, list[str]]:
    """The module to export and its output names: with features when the final Linear is the model's last step
    (checked on `example`), else the model alone."""
    linear = last_linear(model)
    if linear is not None:
        both = WithFeatures(model, linear).eval()
        with torch.no_grad():
            if torch.allclose(both(example)[0], model(example), atol=1e-5):
                return both, [OUTPUT_NAME, FEATURES_NAME]
    log.info("the model's final Linear layer is not its last step: exporting logits without features")
    return model, [OUTPUT_NAME]


def inference_metadata(checkpoint: Checkpoint, with_features: bool) -> dict:
    """What a runtime needs besides the graph: the checkpoint without its weights (classes, preprocessing,
    calibration, threshold, study settings, model card), and what the graph's input and outputs mean."""
    if not with_features:  # the feature statistics need the features output
        checkpoint = replace(checkpoint, study=replace(checkpoint.study, features=None))
    if checkpoint.outputs.segmentation is not None:
        size = checkpoint.outputs.segmentation.work_size
        return {
            **checkpoint.header(),
            "graph": {"input": {"name": INPUT_NAME, "layout": "NCHW", "dtype": "float32",
                                "meaning": f"a {size} px crop of the uint8 body view / 255 (the overview or a kidney "
                                           "zoom: kidneyct.models.look_twice)"},
                      "outputs": {OUTPUT_NAME: "slice logits of the crop",
                                  MAPS_NAME: f"logit maps {list(checkpoint.outputs.maps)} [B, "
                                             f"{len(checkpoint.outputs.maps)}, {size}, {size}]; sigmoid for "
                                             "probabilities"}},
            "disclaimer": DISCLAIMER,
        }
    return {
        **checkpoint.header(),
        "graph": {"input": {"name": INPUT_NAME, "layout": "NCHW", "dtype": "float32",
                            "meaning": "uint8 slice / 255, then (x - mean) / std from preprocessing"},
                  "outputs": {OUTPUT_NAME: "logits; probabilities = softmax(logits / temperature)",
                              **({FEATURES_NAME: "the final Linear layer's input (the scope gate's features)"}
                                 if with_features else {})}},
        "disclaimer": DISCLAIMER,
    }


def export_onnx(checkpoint: str | Path, out: str | Path, opset: int | None = None) -> Path:
    """Write `out` (a single .onnx file, weights inside) with a dynamic batch axis and metadata."""
    import onnx  # imported here for start-up speed, as onnxruntime below: only exports need it

    loaded = load_model(checkpoint, "cpu")
    segmentation = loaded.checkpoint.outputs.segmentation
    size = loaded.checkpoint.preprocessing.image_size if segmentation is None else segmentation.work_size
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, 1, size, size)  # batch 2: a batch of 1 would be specialised away
    if segmentation is not None:
        module, outputs = Segmenting(loaded.model.eval()).eval(), [OUTPUT_NAME, MAPS_NAME]
        example = torch.rand(2, 1, size, size)  # all-zero crops are all air: a degenerate trace
    else:
        module, outputs = exported_module(loaded.model.eval(), torch.rand(2, 1, size, size))
    torch.onnx.export(module, (example,), str(out), input_names=[INPUT_NAME], output_names=outputs,
                      dynamic_shapes=({0: torch.export.Dim("batch")},), opset_version=opset,
                      external_data=False, verbose=False)
    graph = onnx.load(str(out))
    del graph.metadata_props[:]
    entry = graph.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(inference_metadata(loaded.checkpoint, FEATURES_NAME in outputs))
    graph.doc_string = f"kidneyct {loaded.checkpoint.model.name} from {Path(checkpoint).name}. {DISCLAIMER}"
    onnx.checker.check_model(graph)
    onnx.save(graph, str(out))
    return out
