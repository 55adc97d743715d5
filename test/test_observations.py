"""LatestMessages: a topic's message for a tick, or why not (first / stale / pending)."""
import numpy as np

from robot_rl.runtime.observations import LatestMessages, Missing


def test_a_tick_takes_the_message_in_sync_or_gets_a_reason():
    latest = LatestMessages(max_age=0.5, sync_tolerance=0.02)
    assert latest.at("/p", 1.0).kind == "first"
    latest.put("/p", 0.99, np.ones(3))
    np.testing.assert_array_equal(latest.at("/p", 1.0), np.ones(3))
    got = latest.at("/p", 1.1)  # this tick's message may still come
    assert isinstance(got, Missing) and got.kind == "pending"
    got = latest.at("/p", 2.0)
    assert got.kind == "stale" and "1.01 s older than /joint_states" in got.reason
