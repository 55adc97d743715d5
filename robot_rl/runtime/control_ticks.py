"""Which /joint_states stamps are control ticks (no rclpy here: stamps in, decisions out).

A node acts once per `dt` of observation time: on every message of the simulator (one per
control step) and on a subsample of a faster joint_state_broadcaster. A stamp is `due` when it
is later than the last tick taken and not before the next due time (less a small tolerance for
stamp jitter). `take` schedules the next tick `dt` later, on the same grid while the stream
keeps to it, else `dt` after this stamp.
"""
from __future__ import annotations


class ControlTicks:
    def __init__(self, dt: float):
        self.dt = float(dt)
        self.last: float | None = None  # stamp of the last tick taken
        self.next_due: float | None = None

    def due(self, t: float) -> bool:
        if self.last is not None and t <= self.last + 1e-9:
            return False  # answered already
        if self.next_due is not None and t < self.next_due - min(1e-3, self.dt / 10):
            return False  # a faster joint state stream: not a control tick
        return True

    def take(self, t: float) -> None:
        """The stamp `t` is ticked."""
        due = self.next_due
        self.last = t
        self.next_due = due + self.dt if due is not None and t < due + self.dt / 2 else t + self.dt

    def reset(self) -> None:
        self.last = self.next_due = None
