"""The latest message of each observation topic, paired with a control tick by stamp (no ROS).

A tick at joint-state time `t` takes another topic's latest message when it is stamped within
`sync_tolerance` of `t`. Otherwise the tick gets a reason instead of a value: `first` (nothing
has arrived on the topic yet: wait, and say so once), `stale` (the newest message is more than
`max_age` older than the joint states: hold position), or `pending` (this tick's message may
still be on its way: wait silently; the topic's next message ticks again). Every commanding node
that reads more than /joint_states uses it, so the rule is the same everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Missing:
    kind: str  # "first", "stale" or "pending"
    reason: str


class LatestMessages:
    def __init__(self, max_age: float, sync_tolerance: float):
        self.max_age, self.sync_tolerance = float(max_age), float(sync_tolerance)
        self._latest: dict[str, tuple[float, np.ndarray]] = {}

    def put(self, topic: str, stamp: float, value) -> None:
        self._latest[topic] = (float(stamp), value)

    def at(self, topic: str, t: float):
        """The value of `topic` for the tick at `t`, or a Missing."""
        entry = self._latest.get(topic)
        if entry is None:
            return Missing("first", f"waiting for the first message on {topic}")
        stamp, value = entry
        if t - stamp > self.max_age:
            return Missing("stale", f"{topic} is {t - stamp:.2f} s older than /joint_states")
        if abs(t - stamp) > self.sync_tolerance:
            return Missing("pending", f"{topic} has no message within {self.sync_tolerance} s of {t:.3f} yet")
        return value

    def clear(self) -> None:
        self._latest.clear()
