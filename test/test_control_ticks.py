"""ControlTicks: one tick per dt of observation time, from every or a faster joint state stream."""
from robot_rl.runtime.control_ticks import ControlTicks


def ticked(ticks: ControlTicks, stamps) -> list[float]:
    out = []
    for t in stamps:
        if ticks.due(t):
            ticks.take(t)
            out.append(t)
    return out


def test_every_message_at_the_control_rate_is_a_tick_once():
    ticks = ControlTicks(0.1)
    assert ticked(ticks, [0.0, 0.1, 0.1, 0.2, 0.3]) == [0.0, 0.1, 0.2, 0.3]


def test_a_faster_stream_is_subsampled_on_the_grid():
    ticks = ControlTicks(0.1)
    stamps = [round(0.02 * i, 6) for i in range(16)]  # 50 Hz
    assert ticked(ticks, stamps) == [0.0, 0.1, 0.2, 0.3]
    # jitter within the tolerance still ticks, and the grid does not drift
    assert ticked(ControlTicks(0.1), [0.0, 0.0995, 0.2, 0.3004, 0.4]) == [0.0, 0.0995, 0.2, 0.3004, 0.4]


def test_a_gap_restarts_the_grid_and_reset_forgets_it():
    ticks = ControlTicks(0.1)
    assert ticked(ticks, [0.0, 0.1, 0.55, 0.6, 0.65]) == [0.0, 0.1, 0.55, 0.65]
    assert not ticks.due(0.65)
    ticks.reset()
    assert ticks.due(0.0) and ticks.last is None and ticks.next_due is None
