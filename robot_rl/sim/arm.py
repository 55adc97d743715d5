"""The arm as the rest of the code sees it: joint names, limits, home posture, URDF location.

Everything here is read from `urdf/arm.urdf`, so the sim, the safety guard and the nodes agree
with robot_state_publisher about joint order and limits.
"""
from __future__ import annotations

import functools
import xml.etree.ElementTree as ET

import numpy as np

from robot_rl.paths import urdf_dir

ARM_JOINTS = tuple(f"joint{i}" for i in range(1, 8))
GRIPPER_JOINT = "finger_joint"
JOINT_NAMES = ARM_JOINTS + (GRIPPER_JOINT,)
# Panda "ready" posture with an open gripper: the end effector points down above the table.
HOME_QPOS = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785, 0.04])
GRIPPER_OPEN = 0.04
GRIPPER_CLOSED = 0.0
TCP_SITE = "tcp"
URDF_PATH = urdf_dir() / "arm.urdf"


@functools.lru_cache(maxsize=1)
def joint_limits() -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) position limits of JOINT_NAMES, read from the URDF."""
    root = ET.parse(URDF_PATH).getroot()
    limits = {}
    for joint in root.iter("joint"):
        limit = joint.find("limit")
        if limit is not None:
            limits[joint.get("name")] = (float(limit.get("lower")), float(limit.get("upper")))
    lower = np.array([limits[name][0] for name in JOINT_NAMES])
    upper = np.array([limits[name][1] for name in JOINT_NAMES])
    return lower, upper
