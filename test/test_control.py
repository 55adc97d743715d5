"""TrajectoryFollower: interpolation by time_from_start, ramp from the start command, refusals."""
import numpy as np
import pytest

from robot_rl.runtime.control import TrajectoryFollower
from robot_rl.errors import CommandError


def test_ramps_interpolates_and_holds():
    f = TrajectoryFollower(["a", "b"], [1.0, 2.0], [[1.0, 10.0], [2.0, 20.0]], start_time=5.0,
                           start_positions=[0.0, 0.0])
    np.testing.assert_allclose(f.sample(5.0), [0.0, 0.0])
    np.testing.assert_allclose(f.sample(5.5), [0.5, 5.0])
    np.testing.assert_allclose(f.sample(6.5), [1.5, 15.0])
    np.testing.assert_allclose(f.sample(9.0), [2.0, 20.0])
    assert not f.done(6.9) and f.done(7.0)


@pytest.mark.parametrize("times,pos", [([], []), ([0.2, 0.1], [[0.0], [1.0]]),
                                       ([0.1, np.nan], [[0.0], [1.0]]), ([0.1], [[np.inf]])])
def test_refuses_bad_trajectories(times, pos):
    with pytest.raises(CommandError):
        TrajectoryFollower(["a"], times, pos, 0.0, [0.0])
