"""Several trained models as one.

Classifiers (`Ensemble`): the mean of their calibrated probabilities, returned as its log, so everything
downstream that takes logits (softmax, temperature 1, thresholds, ONNX export, Grad-CAM on a member's layer) works
on an ensemble unchanged: softmax(log p) = p when p sums to one.

Segmenting models (`SegmentingEnsemble`): the mean of their slice logits and of their map logits, crop by crop, so
the two looks (kidneyct.models.look_twice) see one model: one kidney finder, one zoom, one set of maps; its
calibration is fitted on the ensemble's own outputs (the members' slice logits pass through the map rule before
any temperature, so theirs cannot be applied inside).
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


class SegmentingEnsemble(nn.Module):
    """Mean of the members' `segment` outputs: slice logits [B, K] and map logits [B, M, H, W].

    Args:
        members: segmenting models with the same maps, classes and work size.
    """

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def segment(self, unit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = [member.segment(unit) for member in self.members]
        logits = torch.stack([logits.float() for logits, _ in outputs]).mean(0)
        return logits, torch.stack([maps.float() for _, maps in outputs]).mean(0)

    def forward(self, unit: torch.Tensor) -> torch.Tensor:
        return self.segment(unit)[0]
