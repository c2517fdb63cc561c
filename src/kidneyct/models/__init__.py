"""Models: the registry (specs importable without torch) and the families it builds, the checkpoint format
(`kidneyct.models.checkpoint`) and the batched forward pass shared by training and inference
(`kidneyct.models.forward`). Importing this package imports no torch; building a model does."""

from kidneyct.errors import PretrainedWeightsUnavailable
from kidneyct.models.registry import ModelConfig, ModelSpec, create_model, get_spec, list_models

__all__ = ["ModelConfig", "ModelSpec", "PretrainedWeightsUnavailable", "create_model", "get_spec", "list_models"]
