"""Where a chunk takes the gripper relative to the objects: TCP offsets of every joint target.

Steering ranks candidates that differ by a few centimetres at the gripper. A critic fed only
joint targets must learn the arm's forward kinematics, and then a difference with the object
positions, from a few hundred episodes before it can see that; appending each target's TCP
position (forward kinematics) minus each object's position gives it directly.
"""
from __future__ import annotations

import numpy as np

from robot_rl.robot import load_robot
from robot_rl.robot.kinematics import tcp_positions

OFFSET_RANGE = 0.3  # metres: offsets are normalised by this (a few cm stay visible)


def with_offsets(chunks: np.ndarray, object_poses: np.ndarray, robot) -> np.ndarray:
    """(N, H, A) chunks and (N, K, >=3) object poses -> (N, H, A + 3K): each joint target
    followed by its TCP offset to every object (x, y, z per object)."""
    chunks = np.asarray(chunks, np.float32)
    objects = np.asarray(object_poses, np.float32)[:, None, :, :3]        # (N, 1, K, 3)
    offsets = tcp_positions(load_robot(robot), chunks)[:, :, None, :] - objects              # (N, H, K, 3)
    return np.concatenate([chunks, offsets.reshape(*chunks.shape[:2], -1)], -1)
