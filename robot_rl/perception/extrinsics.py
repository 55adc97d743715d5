"""Where a camera is: 4x4 base-from-optical transforms from a pose parameter or the robot's URDF.

A camera mounted outside the URDF is a translation + quaternion (x, y, z, w, as geometry_msgs),
the pose of its optical frame in the robot's base frame (`ros2 run tf2_ros tf2_echo base
camera_optical_frame` prints it). A camera in the URDF is a link, usually `<camera>_optical_frame`
(REP 103); its pose follows the joints it hangs from (a wrist camera).
"""
from __future__ import annotations

import numpy as np

from robot_rl.errors import ConfigError

# OpenGL / MuJoCo camera axes (x right, y up, looking along -z) -> optical (x right, y down, z forward)
GL_TO_OPTICAL = np.diag([1.0, -1.0, -1.0])


def pose_matrix(translation, quaternion_xyzw) -> np.ndarray:
    """4x4 transform from a translation and a unit quaternion (x, y, z, w)."""
    t = np.asarray(translation, float).reshape(-1)
    q = np.asarray(quaternion_xyzw, float).reshape(-1)
    if t.size != 3 or q.size != 4 or not np.all(np.isfinite(np.r_[t, q])):
        raise ConfigError(f"a camera pose is 3 translation + 4 quaternion (x, y, z, w) values, got {t.tolist()} {q.tolist()}")
    norm = np.linalg.norm(q)
    if abs(norm - 1.0) > 1e-3:
        raise ConfigError(f"camera quaternion {q.tolist()} is not unit length ({norm:.4f}); give (x, y, z, w)")
    x, y, z, w = q / norm
    m = np.eye(4)
    m[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                 [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                 [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
    m[:3, 3] = t
    return m


def optical_from_gl(position, rotation_gl) -> np.ndarray:
    """A renderer's camera pose (MuJoCo's cam_xpos / cam_xmat) -> base-from-optical 4x4."""
    m = np.eye(4)
    m[:3, :3] = np.asarray(rotation_gl, float).reshape(3, 3) @ GL_TO_OPTICAL
    m[:3, 3] = np.asarray(position, float).reshape(3)
    return m


def _rpy_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    cr, sr, cp, sp, cy, sy = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    return np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                     [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                     [-sp, cp * sr, cp * cr]])


def _axis_angle(axis, angle: float) -> np.ndarray:
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


class LinkPose:
    """The base-from-link transform of one URDF link as a function of the joint positions."""

    def __init__(self, robot, link: str):
        joints = robot.joints()
        by_child = {j.child: j for j in joints.values()}
        if link not in robot.links():
            raise ConfigError(f"camera link {link!r} is not a link of robot {robot.name!r} (links: {list(robot.links())})")
        chain, at = [], link
        while at in by_child:
            chain.append(by_child[at])
            at = by_child[at].parent
        self.link, self.chain = link, chain[::-1]
        self.needs = tuple(j.mimic or j.name for j in self.chain if j.type != "fixed")

    def __call__(self, positions: dict[str, float] | None = None) -> np.ndarray:
        """`positions`: joint name -> position (a mimic joint follows its leader 1:1)."""
        positions = positions or {}
        missing = [n for n in self.needs if n not in positions]
        if missing:
            raise ConfigError(f"the pose of link {self.link!r} needs the positions of joints {missing}")
        m = np.eye(4)
        for j in self.chain:
            step = np.eye(4)
            step[:3, :3] = _rpy_matrix(*j.origin[3:])
            step[:3, 3] = j.origin[:3]
            motion = np.eye(4)
            if j.type in ("revolute", "continuous"):
                motion[:3, :3] = _axis_angle(j.axis, positions[j.mimic or j.name])
            elif j.type == "prismatic":
                motion[:3, 3] = np.asarray(j.axis, float) / np.linalg.norm(j.axis) * positions[j.mimic or j.name]
            m = m @ step @ motion
        return m
