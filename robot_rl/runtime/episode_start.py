"""/sim/episode_start bookkeeping shared by the stateful nodes (no rclpy here: stamps in, decisions out).

The simulator publishes /sim/episode_start (std_msgs/Header, latched) stamped with the new
episode's first observation time, before that observation. A node resets its state (history,
chunk, guard reference) right before it uses that first observation: `begins(stamp)` says when,
once per announced episode. When the announcement arrives after its first observation (another
publisher, a slow subscription), `announce` says so and the node resets at once. Anything stamped
before the current episode (`before(stamp)`) belongs to the old one.
"""
from __future__ import annotations

EPS = 1e-6  # s: stamps are compared with this slack (float round trips through builtin_interfaces/Time)


class EpisodeStart:
    def __init__(self):
        self.start: float | None = None  # the current episode's first observation time
        self._pending = False  # announced, first observation not seen yet

    def announce(self, start: float, last_stamp: float | None) -> bool:
        """A new episode starts at `start`. True when its first observation came already (the
        newest observation stamp `last_stamp` is at or after `start`): reset now."""
        self.start = start
        self._pending = last_stamp is None or last_stamp < start - EPS
        return not self._pending

    def begins(self, stamp: float) -> bool:
        """True once per announced episode: for its first observation (reset before using it)."""
        if self._pending and stamp >= self.start - EPS:
            self._pending = False
            return True
        return False

    def before(self, stamp: float) -> bool:
        """True for a stamp from before the current episode started."""
        return self.start is not None and stamp < self.start - EPS
