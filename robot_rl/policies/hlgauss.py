"""HL-Gauss: regress a scalar value by classification over fixed bins (Farebrother et al. 2024).

The target y becomes the probability mass a Gaussian N(y, sigma^2) puts on each bin, with
sigma = 0.75 bin widths by default; the prediction is the expectation under softmax(logits).
Cross-entropy on these soft labels trains critics more stably than MSE.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


class HLGauss(torch.nn.Module):
    def __init__(self, vmin: float, vmax: float, num_bins: int, sigma_ratio: float = 0.75):
        super().__init__()
        if not vmax > vmin or num_bins < 2:
            raise ValueError("HL-Gauss needs vmax > vmin and at least 2 bins")
        self.num_bins = num_bins
        edges = torch.linspace(vmin, vmax, num_bins + 1)
        self.register_buffer("edges", edges)
        self.register_buffer("centers", (edges[:-1] + edges[1:]) / 2)
        self.sigma = sigma_ratio * (vmax - vmin) / num_bins

    def to_probs(self, target: torch.Tensor) -> torch.Tensor:
        """(...,) scalar targets -> (..., num_bins) soft labels summing to 1."""
        target = target.clamp(self.edges[0], self.edges[-1])
        cdf = torch.special.erf((self.edges - target.unsqueeze(-1)) / (self.sigma * 2**0.5))
        mass = cdf[..., 1:] - cdf[..., :-1]
        return mass / mass.sum(-1, keepdim=True).clamp_min(1e-8)

    def to_scalar(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, -1) @ self.centers

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy between logits (..., bins) and soft labels of target (...)."""
        return -(self.to_probs(target) * F.log_softmax(logits, -1)).sum(-1).mean()
