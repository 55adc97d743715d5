"""Where the residual acts: on each joint target, or as a held TCP offset (task space).

Joint space: correction c (8 values) -> a = clip(a_base + scale * c), forgotten the next step.
Task space: c = (dx, dy, dz, grip). The residual holds a TCP offset o for the episode (0 at the
start): o <- clip(decay * o + scale * (dx, dy, dz), +-max_offset), every base target is moved by
the damped least-squares joint step that displaces its TCP by o, and grip moves the finger.

Why hold an offset: the base commands absolute joint targets, so a one-step joint correction is
undone by the base's next target, and its effect on the outcome (the critic's action gap) stays
small unless the actor repeats it. A held offset keeps each correction, as a residual on a
delta-pose base does (ResFiT); o is then part of the residual's state (`features`, appended to
its observation). A pure integrator (decay 1) also keeps any bias of an early actor: on lift it
drifted to the offset limit and success fell (0.54 -> 0.30); decay < 1 lets the offset leak back.

Learning happens in correction units: the buffers store `follow(base, executed)`, the critic
scores corrections, and only `command` touches the arm's joints.
"""
from __future__ import annotations

import numpy as np

from robot_rl.policies.residual.config import SPACES
from robot_rl.robot import load_robot
from robot_rl.robot.kinematics import kinematics_for

CORRECTION_CLIP = 3.0  # demonstrations can sit far from the base; keep their corrections bounded
DAMPING = 1e-3         # damped least squares; J J+ stays ~I away from singular postures


class CorrectionSpace:
    def __init__(self, kind: str, scale, max_offset: float = 0.08, offset_decay: float = 1.0, robot="arm",
                 limits=None):
        """`limits`: (low, high) of an action (default: the robot's joint limits); `robot` may be
        None in joint space (an environment that is not an arm of ours)."""
        if kind not in SPACES:
            raise ValueError(f"residual_space must be one of {SPACES}, not {kind!r}")
        self.kind = kind
        self.scale = np.asarray(scale, np.float64)
        self.max_offset = max_offset
        self.decay = offset_decay
        self.robot = load_robot(robot) if robot else None
        self.low, self.high = limits if limits is not None else self.robot.joint_limits()
        self.n = self.robot.num_arm if self.robot else len(self.low)
        self.offset = np.zeros(3)

    @property
    def dim(self) -> int:
        return len(self.scale)

    @property
    def feature_dim(self) -> int:
        return 3 if self.kind == "task" else 0

    def critic_units(self) -> np.ndarray:
        """Per correction value, the factor the critic sees it with. Joint space: a fraction of
        the joint's range, as the action normaliser sees an executed action (in [-1, 1] units the
        actor chased an early critic on lift: 0.54 -> 0.30 success in 5k env steps, before demos
        kept their rewards; since f5b5882 both read 0.95-0.97 on lift after 30k and 0.76 on push).
        Task space: as it is."""
        if self.kind == "task":
            return np.ones(self.dim)
        return 2 * self.scale / (self.high - self.low)

    def reset(self) -> None:
        """A new episode: no offset."""
        self.offset = np.zeros(3)

    def features(self) -> np.ndarray:
        """The residual's own state, appended to its observation: the offset in max_offset units."""
        return (self.offset / self.max_offset).astype(np.float32)[: self.feature_dim]

    def _jacobian(self, base: np.ndarray) -> np.ndarray:
        return kinematics_for(self.robot).position_jacobian(base[: self.n])

    def command(self, base, correction) -> np.ndarray:
        """Joint targets (float64, within the joint limits) for a correction in [-1, 1] units.
        Reads the offset, does not move it: `follow` does, with what was really executed."""
        base = np.asarray(base, np.float64)
        step = self.scale * np.asarray(correction, np.float64)
        if self.kind == "task":
            offset = np.clip(self.decay * self.offset + step[:3], -self.max_offset, self.max_offset)
            if not offset.any():
                return np.clip(base + np.concatenate([np.zeros(self.n), step[3:]]), self.low, self.high)
            jac = self._jacobian(base)
            dq = jac.T @ np.linalg.solve(jac @ jac.T + DAMPING**2 * np.eye(3), offset)
            step = np.concatenate([dq, step[3:]])
        return np.clip(base + step, self.low, self.high)

    def follow(self, base, action) -> np.ndarray:
        """The correction (float32, clipped to +-CORRECTION_CLIP) that an executed action made;
        in task space the offset becomes the one that action really holds."""
        base = np.asarray(base, np.float64)
        delta = np.asarray(action, np.float64) - base
        if self.kind == "joint":
            return np.clip(delta / self.scale, -CORRECTION_CLIP, CORRECTION_CLIP).astype(np.float32)
        held = self._jacobian(base) @ delta[: self.n] if delta[: self.n].any() else np.zeros(3)
        held = np.clip(held, -self.max_offset, self.max_offset)
        moved = np.concatenate([held - self.decay * self.offset, delta[self.n:]])
        self.offset = held
        return np.clip(moved / self.scale, -CORRECTION_CLIP, CORRECTION_CLIP).astype(np.float32)


def space_for(cfg) -> CorrectionSpace:
    """A fresh CorrectionSpace (state: no offset) for a ResidualConfig."""
    return CorrectionSpace(cfg.residual_space, cfg.residual_scale, cfg.max_offset, cfg.offset_decay, cfg.robot,
                           cfg.limits())
