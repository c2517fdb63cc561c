"""Several trained models as one: the mean of their calibrated probabilities.

The module's output is the log of that mean, so everything downstream that takes logits (softmax,
temperature 1, thresholds, ONNX export, Grad-CAM on a member's layer) works on an ensemble unchanged:
softmax(log p) = p when p sums to one.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class Ensemble(nn.Module):
    """Mean of the members' temperature-scaled softmax probabilities, returned as log-probabilities.

    Args:
        members: models with the same input and the same classes.
        temperatures: each member's calibration temperature (its probabilities are softmax(logits / T)).
    """

    def __init__(self, members: list[nn.Module], temperatures: list[float]):
        super().__init__()
        if not members or len(members) != len(temperatures):
            raise ValueError(f"{len(members)} members and {len(temperatures)} temperatures")
        self.members = nn.ModuleList(members)
        self.register_buffer("temperatures", torch.tensor(temperatures, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([torch.softmax(m(x).float() / t, dim=1) for m, t in zip(self.members, self.temperatures)])
        return torch.log(probs.mean(0).clamp_min(1e-12))
