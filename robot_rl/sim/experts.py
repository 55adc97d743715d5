"""Scripted experts: Cartesian waypoint state machines solved with IK, one per task.

They read only what a policy sees (joint positions and object poses), so the same expert drives
the sim in-process and through ROS topics. `quality` degrades them on purpose (per-step noise,
hesitation, biased and failed grasps) so that mixed-quality datasets can be generated for
offline RL: 1.0 ("expert") is clean, 0.0 is poor.
"""
from __future__ import annotations

import numpy as np

from robot_rl.errors import ConfigError
from robot_rl.robot import RobotModel, load_robot
from robot_rl.robot.kinematics import down_orientation, kinematics_for
from robot_rl.sim.scene import CUBE_HALF, TABLE_TOP

QUALITY_LEVELS = {"expert": 1.0, "good": 0.75, "medium": 0.5, "poor": 0.2}
MAX_STEP_M = 0.04       # Cartesian waypoint speed: 0.4 m/s at 10 Hz
MAX_YAW_STEP = 0.3      # rad per control step
SAFE_Z = TABLE_TOP + 0.12
OPEN, CLOSED = 1.0, 0.0  # gripper openings (RobotModel.gripper_command)


def quality_value(quality) -> float:
    if isinstance(quality, str):
        if quality not in QUALITY_LEVELS:
            raise ConfigError(f"unknown expert quality {quality!r}; use one of {sorted(QUALITY_LEVELS)} or a number in [0, 1]")
        return QUALITY_LEVELS[quality]
    value = float(quality)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"expert quality must be in [0, 1], got {value}")
    return value


def _yaw_of(quat_wxyz: np.ndarray) -> float:
    w, x, y, z = quat_wxyz
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


def _wrap(angle: float, period: float) -> float:
    """Angle folded into [-period/2, period/2): grippers and cubes are symmetric."""
    return float((angle + period / 2) % period - period / 2)


class ScriptedExpert:
    def __init__(self, task: str, quality="expert", seed: int = 0, robot: str | RobotModel = "arm"):
        if task not in ("reach", "push", "lift"):
            raise ConfigError(f"no scripted expert for task {task!r}")
        self.robot = robot if isinstance(robot, RobotModel) else load_robot(robot)
        self.kin = kinematics_for(self.robot)
        self.n = self.robot.num_arm
        self.task = task
        self.quality = quality_value(quality)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        p = 1.0 - self.quality
        self.phase = "approach"
        self.phase_steps = 0
        self.pause = 0
        self.last_action: np.ndarray | None = None
        self.yaw: float | None = None
        # Per-episode flaws of a poorer operator: a biased aim and, sometimes, a botched grasp.
        self.aim_bias = np.append(self.rng.normal(0.0, 0.025 * p, 2), 0.0)
        self.botch = self.rng.random() < 0.6 * p
        self.noise_std = 0.04 * p
        self.hesitate_prob = 0.15 * p

    # --- the policy protocol -----------------------------------------------------------------
    def act(self, obs: dict) -> np.ndarray:
        q = np.asarray(obs["joint_pos"], float)
        if self.last_action is not None and self.pause > 0:
            self.pause -= 1
            return self.last_action.copy()
        if self.hesitate_prob and self.rng.random() < self.hesitate_prob and self.last_action is not None:
            self.pause = int(self.rng.integers(1, 5))
            return self.last_action.copy()
        tcp, _ = self.kin.fk(q[: self.n])
        target, yaw, gripper = getattr(self, f"_{self.task}")(obs, tcp)
        action = self._solve(q, tcp, target, yaw, gripper)
        if self.noise_std:
            action[: self.n] += self.rng.normal(0.0, self.noise_std, self.n)
        self.phase_steps += 1
        self.last_action = action
        return action.copy()

    def _solve(self, q, tcp, target, yaw, gripper) -> np.ndarray:
        """One rate-limited Cartesian step towards `target`, solved to joint targets by IK."""
        delta = target - tcp
        dist = np.linalg.norm(delta)
        waypoint = tcp + delta * min(1.0, MAX_STEP_M / max(dist, 1e-9))
        if self.yaw is None:
            self.yaw = 0.0
        self.yaw += float(np.clip(_wrap(yaw - self.yaw, 2 * np.pi), -MAX_YAW_STEP, MAX_YAW_STEP))
        arm = self.kin.ik(q[: self.n], waypoint, down_orientation(self.yaw), iterations=15)
        return np.concatenate([arm, self.robot.gripper_command(gripper)])

    def _go(self, phase: str) -> None:
        self.phase, self.phase_steps = phase, 0

    # --- tasks -------------------------------------------------------------------------------
    def _reach(self, obs, tcp):
        goal = np.asarray(obs["object_poses"][0, :3], float) + self.aim_bias
        return goal, 0.0, OPEN

    def _lift(self, obs, tcp):
        cube = np.asarray(obs["object_poses"][0], float)
        pos = cube[:3] + self.aim_bias
        yaw = _wrap(_yaw_of(cube[3:]), np.pi / 2)
        grasp_z = pos[2] + (0.035 if self.botch else 0.0)
        above = np.array([pos[0], pos[1], SAFE_Z])
        if self.phase == "approach":
            if np.linalg.norm(tcp[:2] - pos[:2]) < 0.01 and self.phase_steps > 2:
                self._go("descend")
            return above, yaw, OPEN
        if self.phase == "descend":
            target = np.array([pos[0], pos[1], grasp_z])
            if np.linalg.norm(tcp - target) < 0.008:
                self._go("grasp")
            if np.linalg.norm(tcp[:2] - pos[:2]) > 0.03:  # the cube moved: start over
                self._go("approach")
            return target, yaw, OPEN
        if self.phase == "grasp":
            if self.phase_steps >= 4:
                self._go("lift")
            return np.array([tcp[0], tcp[1], grasp_z]), yaw, CLOSED
        # lift: rise; if the cube stays on the table, the grasp failed: open and try again.
        if self.phase_steps > 6 and cube[2] < TABLE_TOP + CUBE_HALF + 0.02:
            self.botch = self.botch and self.rng.random() < 0.5
            self._go("approach")
            return np.array([tcp[0], tcp[1], SAFE_Z]), yaw, OPEN
        return np.array([tcp[0], tcp[1], TABLE_TOP + 0.25]), yaw, CLOSED

    def _push(self, obs, tcp):
        cube = np.asarray(obs["object_poses"][0, :3], float)
        goal = np.asarray(obs["object_poses"][1, :3], float)
        to_goal = goal[:2] - cube[:2]
        u = to_goal / max(np.linalg.norm(to_goal), 1e-9)
        yaw = _wrap(float(np.arctan2(u[1], u[0])), np.pi)  # the fingers' flat side faces the push
        standoff = CUBE_HALF + 0.025
        behind = cube[:2] - u * standoff + self.aim_bias[:2]
        push_z = TABLE_TOP + 0.02
        # Lateral offset of the pusher from the line through the cube along the push direction.
        rel = tcp[:2] - cube[:2]
        lateral = abs(rel[0] * u[1] - rel[1] * u[0])
        if self.phase == "approach":
            if np.linalg.norm(tcp[:2] - behind) < 0.012 and self.phase_steps > 2:
                self._go("descend")
            return np.array([behind[0], behind[1], SAFE_Z - 0.04]), yaw, CLOSED
        if self.phase == "descend":
            if tcp[2] < push_z + 0.01:
                self._go("push")
            return np.array([behind[0], behind[1], push_z]), yaw, CLOSED
        if lateral > 0.02 or np.dot(rel, u) > 0:  # slipped off the cube: lift and come again
            self._go("retreat")
        if self.phase == "retreat":
            if tcp[2] > SAFE_Z - 0.06:
                self._go("approach")
            return np.array([tcp[0], tcp[1], SAFE_Z]), yaw, CLOSED
        target = cube[:2] - u * (standoff - 0.01) + u * min(0.03, np.linalg.norm(to_goal))
        return np.array([target[0], target[1], push_z]), yaw, CLOSED
