"""What a perception base sees, for a residual or a critic that has no object poses.

A real arm has no /task/object_poses: a point-cloud or RGB base finds the cube in its cameras.
A residual or critic on top of it reads the base's frozen encoder instead: `base_features`, the
base's scene features of the current observation (its camera keys through its own PointNet or
ResNet, DiffusionPolicy.scene_features), filled in by whoever runs the base, like the chunk
context (policies/chunk_context.py). The encoder stays frozen: the residual learns on features
whose meaning does not move, and a base checkpoint is all it needs to compute them again.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

KEY = "base_features"


def sees(policy) -> bool:
    """True for a base with cameras (a diffusion policy reading rgb or points keys)."""
    config = getattr(policy, "config", None)
    return bool(getattr(config, "rgb_keys", ()) or getattr(config, "points_keys", ()))


def of(policy, obs: Mapping) -> dict[str, np.ndarray]:
    """{KEY: the base's scene features of `obs`}, or {} for a base without cameras."""
    return {KEY: policy.scene_features(obs)} if sees(policy) else {}


def of_episode(policy, episode: Mapping, batch: int = 256) -> np.ndarray:
    """The base's scene features of every frame of a recorded episode {key: (T, ...)}: (T, F)."""
    keys = (*policy.config.rgb_keys, *policy.config.points_keys)
    steps = len(episode[keys[0]])
    return np.concatenate([policy.scene_features({k: episode[k][i: i + batch] for k in keys})
                           for i in range(0, steps, batch)])
