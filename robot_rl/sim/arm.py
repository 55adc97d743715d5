"""The arm as the rest of the code sees it: joint names, limits, home posture, URDF location.

Everything here is read from `urdf/arm.urdf`, so the sim, the safety guard and the nodes agree
with robot_state_publisher about joint order and limits.
"""
from __future__ import annotations

import functools
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

ARM_JOINTS = tuple(f"joint{i}" for i in range(1, 8))
GRIPPER_JOINT = "finger_joint"
JOINT_NAMES = ARM_JOINTS + (GRIPPER_JOINT,)
# Panda "ready" posture with an open gripper: the end effector points down above the table.
HOME_QPOS = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785, 0.04])
GRIPPER_OPEN = 0.04
GRIPPER_CLOSED = 0.0
TCP_SITE = "tcp"


def share_dir() -> Path:
    """Where urdf/, config/ and launch/ live: the ament share dir when installed, else the repo."""
    env = os.environ.get("ROBOT_RL_SHARE")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    if (repo / "urdf").is_dir():
        return repo
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("robot_rl"))
    except Exception:  # noqa: BLE001 - no ament index: fall through to the source layout
        return repo


URDF_PATH = share_dir() / "urdf" / "arm.urdf"


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
