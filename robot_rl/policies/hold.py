"""The "no base" base: command the joints where they are.

A residual on top of it is a plain delta-position TD3/RLPD agent learning from scratch, so the
residual trainer doubles as the baseline that shows what the frozen base is worth.
"""
from __future__ import annotations

import numpy as np


class HoldPosition:
    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, obs: dict) -> np.ndarray:
        return np.asarray(obs["joint_pos"], np.float32).copy()
