from kidneyct.models.registry import (
    ModelConfig, ModelSpec, PretrainedWeightsUnavailable, create_model, get_spec, list_models,
)

__all__ = ["ModelConfig", "ModelSpec", "PretrainedWeightsUnavailable", "create_model", "get_spec", "list_models"]
