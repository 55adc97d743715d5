"""Low-dim observation keys -> one flat float32 vector: the input of the RL critics and actors.

Besides the observation's own keys, a key may name a derived feature (DERIVED). Critics learn
from sparse reward what matters in manipulation (will the gripper be at the cube?) far sooner
from a difference of positions than from absolute positions and joint angles they would have
to turn into one themselves:
- `object_rel`: every object's position relative to the TCP;
- `target_rel`: every object's position relative to where the base action sends the TCP
  (forward kinematics of the base's joint targets): the base action, in task space;
- `chunk_end_rel`: every object's position relative to where the base's current chunk ends, and
  `chunk_left`, the share of that chunk still to run: within a chunk the base is open-loop, and
  these say where it is committed to go (policies/chunk_context.py; whoever runs the base adds
  their source keys to the observation);
- `base_features`: what a perception base's frozen encoder sees in the cameras, for a residual
  or critic without object poses (policies/base_view.py; also added by whoever runs the base).
"""
from __future__ import annotations

import numpy as np

from robot_rl.errors import ConfigError
from robot_rl.policies import base_view
from robot_rl.policies.chunk_context import KEYS as CHUNK_KEYS
from robot_rl.robot import load_robot
from robot_rl.robot.kinematics import tcp_positions


def _objects(obs: dict) -> np.ndarray:
    return np.asarray(obs["object_poses"], np.float32)[..., :3]


def _tcp(robot, joint_targets, key: str) -> np.ndarray:
    if robot is None:
        raise ConfigError(f"the feature {key!r} needs the robot (its forward kinematics)")
    return tcp_positions(load_robot(robot), joint_targets)


def _object_rel(obs: dict, base, robot) -> np.ndarray:
    return _objects(obs) - np.asarray(obs["ee_pos"], np.float32)[..., None, :]


def _target_rel(obs: dict, base, robot) -> np.ndarray:
    if base is None:
        raise ValueError("the feature 'target_rel' needs the base action")
    return _objects(obs) - _tcp(robot, base, "target_rel")[..., None, :]


def _chunk_end_rel(obs: dict, base, robot) -> np.ndarray:
    return _objects(obs) - _tcp(robot, np.asarray(obs["chunk_end"], np.float32), "chunk_end_rel")[..., None, :]


# derived key -> (the observation keys it is computed from, f(obs, base action, robot))
DERIVED = {"object_rel": (("object_poses", "ee_pos"), _object_rel),
           "target_rel": (("object_poses",), _target_rel),
           "chunk_end_rel": (("object_poses", "chunk_end"), _chunk_end_rel)}


# Standardisation fixed per feature rather than taken from the data: (mean, std). The chunk's
# phase enters about 30 times larger than a unit-variance input, so the hidden layers split by
# phase: on push (docs/residual-study.md) three 100k-step runs with it scored
# 0.88-0.895 on held-out seeds, one with chunk_left's own std (0.29) 0.785.
FIXED_STATS = {"chunk_left": (0.5, 0.01)}


def source_keys(keys) -> tuple[str, ...]:
    """The observation keys `keys` are read or derived from (what a dataset must hold)."""
    out: list[str] = []
    for k in keys:
        for s in DERIVED[k][0] if k in DERIVED else (k,):
            if s not in out:
                out.append(s)
    return tuple(out)


# Source keys that come from running the base, not from a recording or a topic.
BASE_KEYS = (*CHUNK_KEYS, base_view.KEY)


def recorded_keys(keys) -> tuple[str, ...]:
    """The source keys of `keys` that a recording holds: all but what running the base gives
    (BASE_KEYS: its chunk context and what it sees)."""
    return tuple(k for k in source_keys(keys) if k not in BASE_KEYS)


def _feature(obs: dict, key: str, base, robot) -> np.ndarray:
    return DERIVED[key][1](obs, base, robot) if key in DERIVED else np.asarray(obs[key], np.float32)


def state_vector(obs: dict, keys, base=None, robot=None) -> np.ndarray:
    """The observation keys flattened into one float32 vector, in `keys` order; `base` (the
    base action) is needed by `target_rel` only, `robot` (a RobotModel or its name) by the keys
    that run forward kinematics (target_rel, chunk_end_rel)."""
    return np.concatenate([_feature(obs, k, base, robot).reshape(-1) for k in keys]).astype(np.float32)


def feature_columns(obs: dict, keys, base=None, robot=None) -> dict[str, slice]:
    """Where each key's values sit in the state vector of one observation."""
    columns, at = {}, 0
    for k in keys:
        width = _feature(obs, k, base, robot).size
        columns[k], at = slice(at, at + width), at + width
    return columns


def state_matrix(obs: dict, keys, base=None, robot=None) -> np.ndarray:
    """Like state_vector for a batch: `obs` holds (N, ...) arrays, `base` (N, A); the result is (N, D)."""
    feats = [_feature(obs, k, base, robot) for k in keys]
    return np.concatenate([f.reshape(len(f), -1) for f in feats], 1).astype(np.float32)
