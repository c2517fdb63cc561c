"""Models: the registry (specs importable without torch) and the families it builds, and the batched forward pass
shared by training and inference (`kidneyct.models.forward`); checkpoints are kidneyct.checkpoint's.
Importing this package imports no torch; building a model does."""

from kidneyct.errors import PretrainedWeightsUnavailable
from kidneyct.models.registry import ModelConfig, ModelSpec, create_model, get_spec, list_models

__all__ = ["ModelConfig", "ModelSpec", "PretrainedWeightsUnavailable", "create_model", "get_spec", "list_models"]
