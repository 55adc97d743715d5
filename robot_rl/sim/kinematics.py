"""Forward and inverse kinematics of the arm from the URDF, with MuJoCo Jacobians.

The scripted experts and anything that plans in Cartesian space use this kinematic-only model,
never the simulator's state, so they work identically on observations from a real arm.
"""
from __future__ import annotations

import threading

import mujoco
import numpy as np

from robot_rl.sim.arm import ARM_JOINTS, HOME_QPOS, TCP_SITE, URDF_PATH, joint_limits

# Gripper pointing straight down, fingers closing along the world y axis (the home orientation).
DOWN = np.diag([1.0, -1.0, -1.0])


def yaw_rotation(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def down_orientation(yaw: float) -> np.ndarray:
    """Rotation of a downward-pointing gripper turned by `yaw` about the world z axis."""
    return yaw_rotation(yaw) @ DOWN


def rotation_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Axis-angle vector (world frame) that rotates `current` onto `target`."""
    q_t, q_c, err = np.zeros(4), np.zeros(4), np.zeros(3)
    mujoco.mju_mat2Quat(q_t, target.flatten())
    mujoco.mju_mat2Quat(q_c, current.flatten())
    mujoco.mju_subQuat(err, q_t, q_c)  # in the current frame
    return current @ err


class ArmKinematics:
    def __init__(self):
        spec = mujoco.MjSpec.from_file(str(URDF_PATH))
        spec.body("tcp").add_site(name=TCP_SITE)
        self.model = spec.compile()
        self.data = mujoco.MjData(self.model)
        self._qadr = np.array([self.model.jnt_qposadr[self.model.joint(n).id] for n in ARM_JOINTS])
        self._dadr = np.array([self.model.jnt_dofadr[self.model.joint(n).id] for n in ARM_JOINTS])
        self._site = self.model.site(TCP_SITE).id
        lower, upper = joint_limits()
        self.lower, self.upper = lower[:7], upper[:7]
        self._jacp = np.zeros((3, self.model.nv))
        self._jacr = np.zeros((3, self.model.nv))

    def fk(self, q_arm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """TCP position and rotation matrix for 7 arm joint positions."""
        self.data.qpos[self._qadr] = q_arm
        mujoco.mj_kinematics(self.model, self.data)
        return self.data.site_xpos[self._site].copy(), self.data.site_xmat[self._site].reshape(3, 3).copy()

    def tcp_pose(self, q_arm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """TCP position and quaternion (w, x, y, z) for 7 arm joint positions: ee_pos, ee_quat."""
        pos, rot = self.fk(q_arm)
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, rot.reshape(-1))
        return pos, quat

    def position_jacobian(self, q_arm: np.ndarray) -> np.ndarray:
        """(3, 7) d(TCP position)/d(arm joints) at `q_arm`."""
        self.fk(q_arm)
        mujoco.mj_comPos(self.model, self.data)
        mujoco.mj_jacSite(self.model, self.data, self._jacp, None, self._site)
        return self._jacp[:, self._dadr].copy()

    def ik(self, q_seed: np.ndarray, pos: np.ndarray, rot: np.ndarray, iterations: int = 30,
           damping: float = 0.05, tol: float = 1e-4, posture_gain: float = 0.1) -> np.ndarray:
        """Damped least-squares IK from `q_seed`, pulled towards the home posture in the null space."""
        q = np.array(q_seed[:7], float)
        home = HOME_QPOS[:7]
        for _ in range(iterations):
            cur_pos, cur_rot = self.fk(q)
            err = np.concatenate([pos - cur_pos, rotation_error(rot, cur_rot)])
            if np.linalg.norm(err) < tol:
                break
            mujoco.mj_comPos(self.model, self.data)
            mujoco.mj_jacSite(self.model, self.data, self._jacp, self._jacr, self._site)
            jac = np.vstack([self._jacp[:, self._dadr], self._jacr[:, self._dadr]])
            jjt = jac @ jac.T + damping**2 * np.eye(6)
            dq = jac.T @ np.linalg.solve(jjt, err)
            null = np.eye(7) - jac.T @ np.linalg.solve(jjt, jac)
            dq += null @ (posture_gain * (home - q))
            q = np.clip(q + dq, self.lower, self.upper)
        return q


_per_thread = threading.local()  # fk() writes into the model's MjData: one model per thread


def tcp_positions(joint_targets) -> np.ndarray:
    """(..., A) joint targets (7 arm joints first) -> (..., 3) float32 TCP positions, by forward
    kinematics: where those targets put the gripper (critics read actions this way). Safe from
    several threads (the residual node relabels demos in its learner thread while it controls)."""
    kinematics = getattr(_per_thread, "kinematics", None)
    if kinematics is None:
        kinematics = _per_thread.kinematics = ArmKinematics()
    q = np.asarray(joint_targets, np.float64)
    flat = q.reshape(-1, q.shape[-1])
    return np.stack([kinematics.fk(row[:7])[0] for row in flat]).reshape(*q.shape[:-1], 3).astype(np.float32)
