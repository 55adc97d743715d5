"""CommandGuard: by-name mapping, clamping, refusals that hold the last safe command."""
import numpy as np
import pytest

from robot_rl.errors import CommandError
from robot_rl.runtime.safety import CommandGuard, is_stale

NAMES = ("j1", "j2", "j3")
LOWER = np.array([-1.0, -2.0, 0.0])
UPPER = np.array([1.0, 2.0, 0.04])


def make(max_step=0.5, initial=(0.0, 0.0, 0.02)):
    return CommandGuard(NAMES, LOWER, UPPER, max_step, initial=initial)


def test_accepts_small_command_unchanged():
    g = make()
    r = g.apply([0.1, -0.2, 0.03])
    assert r.ok and not r.clamped
    np.testing.assert_allclose(r.command, [0.1, -0.2, 0.03])
    np.testing.assert_allclose(g.last, [0.1, -0.2, 0.03])


def test_maps_by_name_not_position():
    g = make()
    r = g.apply([0.03, 0.2, -0.1], names=["j3", "j1", "j2"])
    np.testing.assert_allclose(r.command, [0.2, -0.1, 0.03])


def test_named_subset_keeps_other_joints():
    g = make()
    r = g.apply([0.3], names=["j2"])
    np.testing.assert_allclose(r.command, [0.0, 0.3, 0.02])


def test_clamps_to_limits_and_max_step():
    g = CommandGuard(NAMES, LOWER, UPPER, 0.5, initial=[0.0, 0.0, 0.02], startup_ticks=1)
    r = g.apply([5.0, -0.1, 1.0])
    assert r.ok and r.clamped
    np.testing.assert_allclose(r.command, [0.5, -0.1, 0.04])  # step, none, limit
    r = g.apply([5.0, -0.1, 1.0])
    np.testing.assert_allclose(r.command, [0.5, -0.1, 0.04])  # start-up: a step from the arm, not from the last command
    g.observe([0.5, -0.1, 0.04])  # the arm got there
    r = g.apply([5.0, -0.1, 1.0])
    np.testing.assert_allclose(r.command, [1.0, -0.1, 0.04])  # limit reached over two ticks


def test_per_joint_max_step():
    g = CommandGuard(NAMES, LOWER, UPPER, [0.1, 0.2, 0.01], initial=[0, 0, 0.02])
    r = g.apply([1.0, 1.0, 0.04])
    np.testing.assert_allclose(r.command, [0.1, 0.2, 0.03])


@pytest.mark.parametrize("bad", [[np.nan, 0, 0], [0, np.inf, 0], [0, 0, -np.inf]])
def test_refuses_non_finite_and_holds(bad):
    g = make()
    g.apply([0.2, 0.2, 0.02])
    r = g.apply(bad)
    assert not r.ok and "non-finite" in r.refusal and "holding" in r.refusal
    np.testing.assert_allclose(r.command, [0.2, 0.2, 0.02])
    np.testing.assert_allclose(g.last, [0.2, 0.2, 0.02])


@pytest.mark.parametrize("bad", [[0.1, 0.2], [0.1, 0.2, 0.3, 0.4], []])
def test_refuses_wrong_length(bad):
    g = make()
    r = g.apply(bad)
    assert not r.ok and "values for 3 joints" in r.refusal
    np.testing.assert_allclose(r.command, [0.0, 0.0, 0.02])


def test_refuses_unknown_and_duplicate_names():
    g = make()
    assert "unknown joints ['j9']" in g.apply([0.1], names=["j9"]).refusal
    assert "duplicate" in g.apply([0.1, 0.2], names=["j1", "j1"]).refusal
    np.testing.assert_allclose(g.last, [0.0, 0.0, 0.02])


def test_check_raises_one_line_error():
    g = make()
    with pytest.raises(CommandError) as e:
        g.check([np.nan, 0, 0])
    assert "\n" not in str(e.value)


def test_needs_reference_before_commands():
    g = CommandGuard(NAMES, LOWER, UPPER, 0.5)
    r = g.apply([0, 0, 0])
    assert r.command is None and "reset" in r.refusal
    g.reset([0.0, 3.0, 0.02])  # out of limits: clipped
    np.testing.assert_allclose(g.last, [0.0, 2.0, 0.02])


def test_rejects_bad_construction():
    with pytest.raises(CommandError):
        CommandGuard(("a", "a"), [0, 0], [1, 1], 0.1)
    with pytest.raises(CommandError):
        CommandGuard(NAMES, UPPER, LOWER, 0.1)
    with pytest.raises(CommandError):
        CommandGuard(NAMES, LOWER, UPPER, 0.0)


def test_is_stale():
    assert is_stale(None, 10.0, 0.5)
    assert not is_stale(9.8, 10.0, 0.5)
    assert is_stale(9.0, 10.0, 0.5)
    assert is_stale(12.0, 10.0, 0.5)  # stamp from the future: clock jumped back


def test_validate_changes_nothing():
    g = make()
    assert g.validate([0.9, 0.9, 0.04]) is None
    assert "non-finite" in g.validate([np.nan, 0, 0])
    np.testing.assert_allclose(g.last, [0.0, 0.0, 0.02])
