"""A critic ensemble evaluated in one batched pass: E members as one (E, in, out) weight tensor.

Residual RL (10 LayerNorm heads, min over a random pair) and the offline value learners (twin
or ensemble critics) share this module instead of looping over E separate networks.
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F


class EnsembleLinear(nn.Module):
    def __init__(self, members: int, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(members, 1, out_features))
        bound = 1.0 / math.sqrt(in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        """x: (E, B, in) or (B, in) shared by all members -> (E, B, out); `members` picks a subset."""
        weight, bias = (self.weight, self.bias) if members is None else (self.weight[members], self.bias[members])
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(weight.shape[0], -1, -1)
        return torch.baddbmm(bias, x, weight)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm with a separate scale and shift per member."""

    def __init__(self, members: int, features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(members, 1, features))
        self.bias = nn.Parameter(torch.zeros(members, 1, features))

    def forward(self, x, members: torch.Tensor | None = None):
        weight, bias = (self.weight, self.bias) if members is None else (self.weight[members], self.bias[members])
        return torch.addcmul(bias, F.layer_norm(x, x.shape[-1:]), weight)  # one pass, not two


class CriticEnsemble(nn.Module):
    """E MLPs Q(x) -> (E, B, out_dim)."""

    def __init__(self, in_dim: int, members: int = 2, hidden: int = 256, layers: int = 2,
                 out_dim: int = 1, layer_norm: bool = True):
        super().__init__()
        blocks: list[nn.Module] = []
        width = in_dim
        for _ in range(layers):
            blocks.append(EnsembleLinear(members, width, hidden))
            if layer_norm:
                blocks.append(EnsembleLayerNorm(members, hidden))
            blocks.append(nn.ReLU())
            width = hidden
        blocks.append(EnsembleLinear(members, width, out_dim))
        self.net = nn.Sequential(*blocks)
        self.members = members
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        """All members, or only `members` (indices): a TD target that takes the min over a pair
        need not evaluate the other heads."""
        for block in self.net:
            x = block(x) if isinstance(block, nn.ReLU) else block(x, members)
        return x
