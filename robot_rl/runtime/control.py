"""Joint trajectory sampling (no ROS): what a JointTrajectory means, tick by tick.

Like ros2_control's joint_trajectory_controller with linear interpolation: the arm goes from
where it was commanded when the trajectory arrived to each point by its time_from_start, and
holds the last point afterwards.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from robot_rl.errors import CommandError


class TrajectoryFollower:
    def __init__(self, names: Sequence[str], times, positions, start_time: float, start_positions):
        self.names = tuple(names)
        times = np.asarray(times, dtype=np.float64).reshape(-1)
        positions = np.asarray(positions, dtype=np.float64).reshape(len(times), len(self.names))
        start = np.asarray(start_positions, dtype=np.float64).reshape(len(self.names))
        if len(times) == 0:
            raise CommandError("trajectory refused: it has no points")
        if not (np.all(np.isfinite(times)) and np.all(np.isfinite(positions))):
            raise CommandError("trajectory refused: non-finite times or positions")
        if times[0] < 0 or np.any(np.diff(times) <= 0):
            raise CommandError(f"trajectory refused: time_from_start must increase from >= 0, got {times.tolist()}")
        if times[0] > 0:  # ramp from the current command to the first point
            times = np.concatenate([[0.0], times])
            positions = np.vstack([start, positions])
        self.times, self.positions, self.start_time = times, positions, float(start_time)

    @property
    def duration(self) -> float:
        return float(self.times[-1])

    def sample(self, t: float) -> np.ndarray:
        """Positions (in `names` order) at absolute time t."""
        s = t - self.start_time
        out = np.empty(len(self.names))
        for j in range(len(self.names)):  # n joints, not n samples: small
            out[j] = np.interp(s, self.times, self.positions[:, j])
        return out

    def done(self, t: float) -> bool:
        return t - self.start_time >= self.duration
