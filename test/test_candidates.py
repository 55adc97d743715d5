"""/policy/candidates layout: N chunks in one JointTrajectory, and back (no ROS graph)."""
from __future__ import annotations

import numpy as np
import pytest

from robot_rl.errors import DataError
from robot_rl.ros import msgs
from robot_rl.ros.candidates import candidates_to_msg, msg_to_candidates
from arms import JOINT_NAMES


@pytest.mark.parametrize("n, m", [(1, 8), (4, 9), (32, 1)])
def test_round_trip(n, m):
    chunks = np.random.default_rng(0).normal(size=(n, m, 8))
    msg = candidates_to_msg(JOINT_NAMES, chunks, 0.1, stamp=12.3)
    assert len(msg.points) == n * m and msgs.from_time(msg.header.stamp) == pytest.approx(12.3)
    # time_from_start restarts for each candidate
    assert [msgs.from_duration(p.time_from_start) for p in msg.points[:m]] == pytest.approx(0.1 * np.arange(m))
    names, stamp, times, back = msg_to_candidates(msg)
    assert names == JOINT_NAMES and stamp == pytest.approx(12.3)
    np.testing.assert_allclose(times, 0.1 * np.arange(m), atol=1e-9)
    np.testing.assert_array_equal(back, chunks)


def test_a_single_chunk_is_an_action_chunk():
    chunk = np.ones((5, 8))
    single = msgs.trajectory_to_msg(JOINT_NAMES, 0.1 * np.arange(5), chunk, 3.0)
    _, _, _, back = msg_to_candidates(single)
    assert back.shape == (1, 5, 8)


def test_malformed_messages_raise():
    msg = candidates_to_msg(JOINT_NAMES, np.zeros((2, 3, 8)), 0.1, 1.0)
    msg.points = msg.points[:5]  # 3 + 2 points: unequal chunks
    with pytest.raises(DataError):
        msg_to_candidates(msg)
    with pytest.raises(DataError):
        candidates_to_msg(JOINT_NAMES, np.zeros((2, 3, 7)), 0.1, 1.0)
    empty = candidates_to_msg(JOINT_NAMES, np.zeros((1, 1, 8)), 0.1, 1.0)
    empty.points = []
    with pytest.raises(DataError):
        msg_to_candidates(empty)
