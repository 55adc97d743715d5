"""N sampled action chunks in one trajectory_msgs/JointTrajectory: the /policy/candidates layout.

    header.stamp      the time of the observation all N chunks were sampled from (the same stamp
                      as the /policy/action_chunk computed from that observation)
    header.frame_id   "" (unused)
    joint_names       the A joints of every action, in the policy's `joint_names` order
    points            N * M points: candidate 0's M points, then candidate 1's, ... Each point
                      holds `positions` (A absolute joint targets) and nothing else.
    time_from_start   restarts for each candidate: point j of every candidate has j * dt,
                      relative to header.stamp (point 0 is the action for the observation tick)

So N is the number of points whose time_from_start does not increase over the point before it
(plus one), and M = len(points) / N. Every candidate has the same M and the same times. A single
chunk (/policy/action_chunk) is the same message with N = 1.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from trajectory_msgs.msg import JointTrajectory

from robot_rl.errors import DataError
from robot_rl.ros import msgs


def candidates_to_msg(names: Sequence[str], chunks, dt: float, stamp: float) -> JointTrajectory:
    """chunks (N, M, A) sampled from the observation at `stamp` -> JointTrajectory (N * M points)."""
    chunks = np.asarray(chunks, dtype=np.float64)
    if chunks.ndim == 2:
        chunks = chunks[None]
    if chunks.ndim != 3 or chunks.shape[2] != len(names) or chunks.shape[1] < 1:
        raise DataError(f"candidates must be (N, M >= 1, {len(names)}), got {chunks.shape}")
    n, m, a = chunks.shape
    times = np.tile(np.arange(m) * float(dt), n)
    return msgs.trajectory_to_msg(names, times, chunks.reshape(n * m, a), stamp)


def msg_to_candidates(msg: JointTrajectory):
    """JointTrajectory in the layout above -> (names, stamp, times (M,), chunks (N, M, A))."""
    names, times, positions = msgs.trajectory_from_msg(msg)
    if not len(times):
        raise DataError("candidates message has no points")
    starts = np.flatnonzero(np.r_[True, np.diff(times) <= 0])  # where time_from_start restarts
    n = len(starts)
    m = len(times) // n
    if m * n != len(times) or not np.all(starts == np.arange(n) * m):
        raise DataError(f"candidates message: {len(times)} points do not split into equal chunks "
                        f"(time_from_start restarts at points {starts.tolist()})")
    per = times.reshape(n, m)
    if not np.allclose(per, per[0], atol=1e-6):
        raise DataError("candidates message: the chunks have different time_from_start values")
    return names, msgs.from_time(msg.header.stamp), per[0].copy(), positions.reshape(n, m, len(names))
