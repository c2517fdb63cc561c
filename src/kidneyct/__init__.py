"""kidneyct: kidney tumor detection in CT images (research software, not a medical device)."""

from kidneyct.about import DISCLAIMER, __version__


def load(checkpoint=None, device: str = "cpu", backend: str = "torch"):
    """A Predictor: ``kidneyct.load().predict("scan.nii.gz").to_json()``.

    Args:
        checkpoint: a checkpoint written by `kidneyct train` (``best.pt``) or an export (``.onnx``); None: the
            model shipped with kidneyct.
        device: "cpu", "cuda", "cuda:N" or "auto".
        backend: "torch", or "onnx" (onnxruntime; the shipped model's export when `checkpoint` is None).

    Returns:
        A `kidneyct.inference.predictor.Predictor` with the checkpoint's preprocessing, calibration, threshold and
        study settings; its `predict` and `run` give `StudyResult`s, the objects the command line writes.
    """
    # Imported here for start-up speed: `import kidneyct` (and so the CLI's --help) must not import torch.
    from kidneyct.inference.predictor import Predictor

    return Predictor.open(checkpoint, device=device, backend=backend)


__all__ = ["DISCLAIMER", "load", "__version__"]
