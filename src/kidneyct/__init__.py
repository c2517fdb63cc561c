"""kidneyct: kidney tumor detection in CT images (research software, not a medical device)."""

__version__ = "0.1.0"

DISCLAIMER = (
    "Research software, not a medical device: kidneyct is not cleared or approved for clinical use "
    "and must not be used to diagnose, treat or triage patients."
)


def load(checkpoint, device: str = "cpu"):
    """A Predictor for a checkpoint: ``kidneyct.load("runs/x/best.pt").predict("slice.png")``."""
    from kidneyct.predict import Predictor

    return Predictor.from_checkpoint(checkpoint, device=device)


__all__ = ["DISCLAIMER", "load", "__version__"]
