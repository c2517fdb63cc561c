"""kidneyct: kidney tumor detection in CT images (research software, not a medical device)."""

from kidneyct.about import DISCLAIMER, __version__


def load(checkpoint, device: str = "cpu"):
    """A Predictor for a checkpoint: ``kidneyct.load("runs/x/best.pt").predict("slice.png")``.

    Args:
        checkpoint: a checkpoint file written by `kidneyct train` (``best.pt`` or ``last.pt``).
        device: "cpu", "cuda", "cuda:N" or "auto".

    Returns:
        A `kidneyct.inference.predictor.Predictor` with the checkpoint's preprocessing, calibration and
        threshold.
    """
    # Imported here for start-up speed: `import kidneyct` (and so the CLI's --help) must not import torch.
    from kidneyct.inference.predictor import Predictor

    return Predictor.from_checkpoint(checkpoint, device=device)


__all__ = ["DISCLAIMER", "load", "__version__"]
