"""Low-dim observation keys -> one flat float32 vector: the input of the RL critics and actors."""
from __future__ import annotations

import numpy as np


def state_vector(obs: dict, keys) -> np.ndarray:
    """The observation keys flattened into one float32 vector, in `keys` order."""
    return np.concatenate([np.asarray(obs[k], np.float32).reshape(-1) for k in keys])
