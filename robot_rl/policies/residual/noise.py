"""Exploration noise of the residual, in correction units: Gaussian, optionally correlated in time.

White noise on absolute joint targets averages out within a step or two of the position
controller: the data then never shows what a correction held for a while does, which is what
fixes a base that is a few centimetres off. AR(1) noise with correlation rho keeps the same
per-step std and holds a deviation for about 1 / (1 - rho) steps.
"""
from __future__ import annotations

import numpy as np


class ExplorationNoise:
    def __init__(self, dim: int, correlation: float = 0.0, rng: np.random.Generator | None = None):
        if not 0.0 <= correlation < 1.0:
            raise ValueError(f"noise correlation must be in [0, 1), not {correlation}")
        self.dim, self.correlation = dim, correlation
        self.rng = rng if rng is not None else np.random.default_rng()
        self.state = np.zeros(dim)

    def reset(self) -> None:
        """A new episode: a fresh draw, uncorrelated with the last episode's."""
        self.state = self.rng.standard_normal(self.dim)

    def sample(self, std: float) -> np.ndarray:
        rho = self.correlation
        self.state = rho * self.state + np.sqrt(1.0 - rho**2) * self.rng.standard_normal(self.dim)
        return std * self.state
