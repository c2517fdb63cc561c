"""Inference: run a checkpoint. The predictor behind `kidneyct.load`, the study rule, the batch path of
`kidneyct predict` and `kidneyct explain` (PyTorch or onnxruntime backends), Grad-CAM explanations and the
ONNX export."""
