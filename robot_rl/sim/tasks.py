"""The manipulation tasks: how each one randomises its start, scores a state, and decides success.

A task only reads and writes MuJoCo state; the env owns stepping, observations and cameras.
"""
from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from robot_rl.sim.scene import CUBE_HALF, TABLE_TOP


def _closeness(distance: float, scale: float = 10.0) -> float:
    """1 at distance 0, falling smoothly towards 0: the usual dense shaping term."""
    return float(1.0 - np.tanh(scale * distance))


@dataclass(frozen=True)
class Task:
    name: str
    object_names: tuple[str, ...]
    max_steps: int
    with_cube: bool
    goal_kind: str  # 'sphere', 'disc' or 'none' (see scene.build_model)

    def randomize(self, model: mujoco.MjModel, data: mujoco.MjData, rng: np.random.Generator) -> None:
        raise NotImplementedError

    def evaluate(self, data: mujoco.MjData) -> tuple[float, bool]:
        """(dense reward in [0, 1], success)."""
        raise NotImplementedError


def _place_cube(model, data, rng) -> np.ndarray:
    xy = np.array([rng.uniform(0.4, 0.6), rng.uniform(-0.15, 0.15)])
    yaw = rng.uniform(-np.pi / 4, np.pi / 4)
    adr = model.jnt_qposadr[model.joint("cube_joint").id]
    data.qpos[adr:adr + 3] = [xy[0], xy[1], TABLE_TOP + CUBE_HALF]
    data.qpos[adr + 3:adr + 7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
    return xy


def _tcp(data) -> np.ndarray:
    return data.site("tcp").xpos


class Reach(Task):
    def randomize(self, model, data, rng):
        data.mocap_pos[0] = [rng.uniform(0.35, 0.65), rng.uniform(-0.25, 0.25), rng.uniform(0.1, 0.4)]

    def evaluate(self, data):
        d = float(np.linalg.norm(_tcp(data) - data.mocap_pos[0]))
        return _closeness(d), d < 0.02


class Push(Task):
    GOAL_RADIUS = 0.05

    def randomize(self, model, data, rng):
        cube = _place_cube(model, data, rng)
        for _ in range(100):  # a goal 10-20 cm away that stays on the reachable part of the table
            angle = rng.uniform(-np.pi, np.pi)
            goal = cube + rng.uniform(0.1, 0.2) * np.array([np.cos(angle), np.sin(angle)])
            if 0.35 <= goal[0] <= 0.65 and abs(goal[1]) <= 0.25:
                break
        data.mocap_pos[0] = [goal[0], goal[1], TABLE_TOP + 0.001]

    def evaluate(self, data):
        cube = data.body("cube").xpos
        d_goal = float(np.linalg.norm(cube[:2] - data.mocap_pos[0][:2]))
        d_tcp = float(np.linalg.norm(_tcp(data) - cube))
        success = d_goal < self.GOAL_RADIUS and cube[2] < TABLE_TOP + 2 * CUBE_HALF
        return 0.3 * _closeness(d_tcp) + 0.7 * _closeness(d_goal, 5.0), bool(success)


class Lift(Task):
    LIFT_HEIGHT = 0.1

    def randomize(self, model, data, rng):
        _place_cube(model, data, rng)

    def evaluate(self, data):
        cube = data.body("cube").xpos
        height = float(cube[2] - (TABLE_TOP + CUBE_HALF))
        d_tcp = float(np.linalg.norm(_tcp(data) - cube))
        reward = 0.3 * _closeness(d_tcp) + 0.7 * min(max(height, 0.0) / self.LIFT_HEIGHT, 1.0)
        return reward, height > self.LIFT_HEIGHT


TASKS: dict[str, Task] = {
    "reach": Reach("reach", ("goal",), 50, with_cube=False, goal_kind="sphere"),
    "push": Push("push", ("cube", "goal"), 120, with_cube=True, goal_kind="disc"),
    "lift": Lift("lift", ("cube",), 80, with_cube=True, goal_kind="none"),
}
