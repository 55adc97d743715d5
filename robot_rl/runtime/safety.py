"""The command guard every arm-commanding path goes through (no ROS here).

Commands arrive with joint names and are mapped into the guarded joint order by name, never by
position, so a publisher with a different joint order cannot swap joints. A command that is
non-finite, the wrong length, or names unknown joints is refused as a whole with one message,
and the last safe command stays in force. Accepted commands are clamped to the joint limits
and to `max_step` per tick relative to the last safe command. Start-up (`startup_ticks` > 0,
as every commanding node has it): after `reset` (the measured state) and for that many
measurements (`observe`), a command is also at most one step from the latest measured state, so a late first chunk that answers two ticks at once
cannot send the arm two steps from where it stands.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from robot_rl.errors import CommandError

STARTUP_TICKS = 2  # measurements after a reset during which commands stay within a step of the arm


@dataclass(frozen=True)
class GuardResult:
    """What the guard decided: the command to send (always safe) and why, if it refused."""

    command: np.ndarray | None  # None only while no reference position is known
    refusal: str | None = None  # one-line reason when the input was refused
    clamped: bool = False  # True when limits or max_step changed an accepted command

    @property
    def ok(self) -> bool:
        return self.refusal is None


class CommandGuard:
    """Clamps and validates joint position commands for one arm."""

    def __init__(
        self,
        joint_names: Sequence[str],
        lower: Sequence[float],
        upper: Sequence[float],
        max_step: float | Sequence[float],
        initial: Sequence[float] | None = None,
        startup_ticks: int = 0,
    ):
        self.joint_names = tuple(str(n) for n in joint_names)
        n = len(self.joint_names)
        if n == 0 or len(set(self.joint_names)) != n:
            raise CommandError(f"joint_names must be non-empty and unique, got {self.joint_names}")
        self.lower = np.asarray(lower, dtype=np.float64).reshape(-1)
        self.upper = np.asarray(upper, dtype=np.float64).reshape(-1)
        self.max_step = np.broadcast_to(np.asarray(max_step, dtype=np.float64), (n,)).copy()
        if self.lower.shape != (n,) or self.upper.shape != (n,):
            raise CommandError(f"joint limits must have {n} values each")
        if not (np.all(np.isfinite(self.lower)) and np.all(np.isfinite(self.upper))
                and np.all(self.lower <= self.upper)):
            raise CommandError("joint limits must be finite with lower <= upper")
        if not np.all(self.max_step > 0):
            raise CommandError(f"max_step must be > 0, got {self.max_step}")
        self._index = {name: i for i, name in enumerate(self.joint_names)}
        self._last: np.ndarray | None = None
        self._measured: np.ndarray | None = None
        self._startup = 0
        self.startup_ticks = int(startup_ticks)
        if initial is not None:
            self.reset(initial)

    @property
    def last(self) -> np.ndarray | None:
        """The last safe command (a copy), or None before the first reset."""
        return None if self._last is None else self._last.copy()

    def reset(self, positions: Sequence[float]) -> None:
        """Take measured joint positions (guarded order) as the reference, e.g. after a reset."""
        q = np.asarray(positions, dtype=np.float64).reshape(-1)
        if q.shape != (len(self.joint_names),) or not np.all(np.isfinite(q)):
            raise CommandError(f"reset needs {len(self.joint_names)} finite positions, got {q}")
        self._last = np.clip(q, self.lower, self.upper)
        self._measured = self._last.copy()
        self._startup = self.startup_ticks

    def observe(self, positions: Sequence[float]) -> None:
        """A new measurement of the arm (guarded order), once per tick: during start-up the
        commands stay within one step of it."""
        if self._startup <= 0:
            return
        q = np.asarray(positions, dtype=np.float64).reshape(-1)
        if q.shape == (len(self.joint_names),) and np.all(np.isfinite(q)):
            self._measured = np.clip(q, self.lower, self.upper)
            self._startup -= 1

    def validate(self, values: Sequence[float], names: Sequence[str] | None = None) -> str | None:
        """The reason a command would be refused (one line), or None. Changes nothing."""
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        names = self.joint_names if names is None else tuple(str(n) for n in names)
        if len(v) != len(names):
            return f"{len(v)} values for {len(names)} joints {list(names)}"
        unknown = [n for n in names if n not in self._index]
        if unknown:
            return f"unknown joints {unknown} (known: {list(self.joint_names)})"
        if len(set(names)) != len(names):
            return f"duplicate joint names in {list(names)}"
        if not np.all(np.isfinite(v)):
            return f"non-finite values for {[n for n, x in zip(names, v) if not np.isfinite(x)]}"
        return None

    def apply(self, values: Sequence[float], names: Sequence[str] | None = None) -> GuardResult:
        """Validate, map by name and clamp one command (one control tick). Never raises.

        `names` gives the joint of each value; None means the guarded order. A named command may
        cover a subset of the joints: the others keep their last safe value.
        """
        if self._last is None:
            return GuardResult(None, "command refused: no reference position yet (call reset first)")
        reason = self.validate(values, names)
        if reason is not None:
            return GuardResult(self.last, f"command refused: {reason}; holding the last safe command")
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        names = self.joint_names if names is None else tuple(str(n) for n in names)
        target = self._last.copy()
        target[[self._index[n] for n in names]] = v
        safe = np.clip(target, self.lower, self.upper)
        safe = np.clip(safe, self._last - self.max_step, self._last + self.max_step)
        if self._startup > 0:  # start-up: also within a step of where the arm was measured
            safe = np.clip(safe, self._measured - self.max_step, self._measured + self.max_step)
        self._last = safe
        return GuardResult(safe.copy(), None, bool(np.any(safe != target)))

    def check(self, values: Sequence[float], names: Sequence[str] | None = None) -> np.ndarray:
        """Like `apply` but raises CommandError on refusal; returns the safe command."""
        result = self.apply(values, names)
        if result.refusal is not None:
            raise CommandError(result.refusal)
        return result.command

    def hold(self) -> np.ndarray | None:
        """The command to send when there is nothing new (or observations are stale)."""
        return self.last


def is_stale(last_stamp: float | None, now: float, max_age: float) -> bool:
    """True when no observation has arrived, or the newest is older than `max_age` seconds.

    A stamp from the future (a clock that jumped back, e.g. a restarted sim) counts as stale
    too: its age cannot be trusted.
    """
    if last_stamp is None:
        return True
    age = now - last_stamp
    return age > max_age or age < -max_age


def guard_for_robot(robot, joints, dt: float, max_step: float = 0.0, gripper_max_step: float = 0.0,
                    startup_ticks: int = STARTUP_TICKS) -> CommandGuard:
    """The guard of a commanding node, in the controller's joint order (`joints`: a JointMap).

    Limits come from the robot model (its URDF); the step per tick from its velocity limits times
    the tick period `dt`, unless `max_step` (arm joints, rad) or `gripper_max_step` (gripper, m)
    are set > 0. `startup_ticks` 0 for a guard of trajectory points (each a step from the one before).
    """
    index = [robot.joint_names.index(n) for n in joints.policy_joints]
    lower, upper = robot.lower[index], robot.upper[index]
    steps = robot.max_step(dt)[index]
    gripper = robot.is_gripper()[index]
    if max_step > 0:
        steps = np.where(gripper, steps, max_step)
    if gripper_max_step > 0:
        steps = np.where(gripper, gripper_max_step, steps)
    return CommandGuard(joints.controller_joints, joints.to_controller(lower), joints.to_controller(upper),
                        joints.to_controller(steps), startup_ticks=startup_ticks)
