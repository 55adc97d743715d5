"""Exploration noise of the residual, in correction units: white Gaussian, independent per step.

AR(1)-correlated noise (a deviation held for about 1 / (1 - rho) steps, on the idea that white
noise on absolute joint targets averages out in the position controller) was tried and did not
help (docs/results.md), so the noise is plain white: one fresh N(0, std^2) draw per step.
"""
from __future__ import annotations

import numpy as np


class ExplorationNoise:
    def __init__(self, dim: int, rng: np.random.Generator | None = None):
        self.dim = dim
        self.rng = rng if rng is not None else np.random.default_rng()

    def sample(self, std: float) -> np.ndarray:
        return std * self.rng.standard_normal(self.dim)
