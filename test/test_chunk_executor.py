"""ChunkExecutor: receding horizon and latency compensation in observation time (no ROS)."""
from __future__ import annotations

import numpy as np
import pytest

from robot_rl.errors import ConfigError
from robot_rl.runtime.chunk_executor import ChunkExecutor

DT = 0.1


def chunk(stamp: float, length: int) -> np.ndarray:
    """Actions whose value is their own time (stamp + k * dt): easy to check which one ran."""
    return (stamp + DT * np.arange(length))[:, None] * np.ones((1, 2))


def t(i: int) -> float:
    return 10.0 + i * DT


def run(ex: ChunkExecutor, ticks: int, latency_ticks: int):
    """Drive `ex` like the node: a request's chunk arrives `latency_ticks` ticks later, just
    before that tick (0: before the requesting tick is over). Returns per tick the time of the
    action commanded for it (None: nothing) and the ticks that requested."""
    commanded, requests, in_flight = {}, [], []
    for i in range(ticks):
        for due, stamp, gen in [f for f in in_flight if f[0] == i]:
            d = ex.deliver(stamp, chunk(stamp, ex.chunk_length), gen)
            if d.action is not None:
                commanded[i - 1] = d.action[0]
        in_flight = [f for f in in_flight if f[0] != i]
        tk = ex.tick(t(i))
        if tk.action is not None:
            commanded[i] = tk.action[0]
        if tk.request:
            requests.append(i)
            if latency_ticks == 0:
                d = ex.deliver(t(i), chunk(t(i), ex.chunk_length), ex.generation)
                if d.action is not None:
                    commanded[i] = d.action[0]
            else:
                in_flight.append((i + latency_ticks, t(i), ex.generation))
    return commanded, requests


def test_lead_zero_is_act_semantics():
    """request_lead 0, answered before the next tick: a chunk every Ta ticks, all Ta actions run,
    each tick commanded with the action for its own time (DiffusionPolicy.act in lock-step)."""
    ex = ChunkExecutor(DT, action_horizon=4, request_lead=0)
    commanded, requests = run(ex, 12, latency_ticks=0)
    assert requests == [0, 4, 8]
    assert [round(commanded[i], 6) for i in range(12)] == [round(t(i), 6) for i in range(12)]


def test_lead_covers_inference_so_no_tick_waits():
    """With a chunk of Ta + L actions and inference taking <= L ticks, no tick is left without an
    action; the first L actions of every later chunk are skipped (their time has passed)."""
    ex = ChunkExecutor(DT, action_horizon=4, request_lead=2)
    assert ex.chunk_length == 6
    commanded, requests = run(ex, 20, latency_ticks=2)
    assert requests == [0, 4, 8, 12, 16]
    # tick 0 waits for the very first chunk (arrives just before tick 2: answered late as tick 1's)
    assert 0 not in commanded
    for i in range(1, 20):
        assert i in commanded, f"tick {i} got no action"
        assert commanded[i] == pytest.approx(t(i)), "an action ran at a time other than its own"


def test_deliver_skips_actions_whose_time_passed():
    ex = ChunkExecutor(DT, action_horizon=8, request_lead=0)
    assert ex.tick(t(0)).request
    for i in (1, 2, 3):  # three ticks pass with no chunk: each waits
        tk = ex.tick(t(i))
        assert tk.action is None and not tk.request and ex.waiting
    d = ex.deliver(t(0), chunk(t(0), 8), ex.generation)
    assert d.accepted and d.skipped == 3 and d.index == 3
    assert d.action[0] == pytest.approx(t(3))  # the waiting tick is answered with its own action
    tk = ex.tick(t(4))
    assert tk.index == 4 and tk.action[0] == pytest.approx(t(4)) and not tk.request


def test_answered_tick_is_not_answered_twice():
    """A chunk arriving after its tick was answered from the old chunk starts at the next tick."""
    ex = ChunkExecutor(DT, action_horizon=2, request_lead=1)
    ex.tick(t(0))
    ex.deliver(t(0), chunk(t(0), 3), ex.generation)
    ex.tick(t(1))
    tk = ex.tick(t(2))  # 2 ticks after the chunk: request, still answered from index 2
    assert tk.request and tk.index == 2
    d = ex.deliver(t(2), chunk(t(2), 3), ex.generation)
    assert d.accepted and d.action is None and d.skipped == 1
    assert ex.tick(t(3)).action[0] == pytest.approx(t(3))


def test_late_chunk_is_dropped_and_rerequested():
    ex = ChunkExecutor(DT, action_horizon=2, request_lead=0)
    assert ex.tick(t(0)).request
    for i in (1, 2, 3):
        ex.tick(t(i))
    d = ex.deliver(t(0), chunk(t(0), 2), ex.generation)  # covers ticks 0-1 only; tick 3 waits
    assert not d.accepted and d.reason == "late" and d.request
    assert ex.pending == pytest.approx(t(3))
    d = ex.deliver(t(3), chunk(t(3), 2), ex.generation)
    assert d.accepted and d.action[0] == pytest.approx(t(3))


def test_reset_refuses_chunks_computed_before_it():
    ex = ChunkExecutor(DT, action_horizon=4)
    ex.tick(t(0))
    gen = ex.generation
    ex.reset()
    assert ex.deliver(t(0), chunk(t(0), 4), gen).reason == "reset"
    tk = ex.tick(t(1))
    assert tk.request and tk.action is None


def test_time_going_back_resets():
    ex = ChunkExecutor(DT, action_horizon=4)
    ex.tick(t(5))
    gen = ex.generation
    ex.deliver(t(5), chunk(t(5), 4), gen)
    tk = ex.tick(t(0))
    assert tk.reset and tk.request and tk.action is None and ex.generation == gen + 1


def test_older_chunk_never_replaces_newer():
    ex = ChunkExecutor(DT, action_horizon=4, request_lead=2)
    ex.tick(t(0))
    ex.deliver(t(0), chunk(t(0), 6), ex.generation)
    for i in range(1, 5):
        ex.tick(t(i))
    ex.deliver(t(4), chunk(t(4), 6), ex.generation)
    assert ex.deliver(t(0), chunk(t(0), 6), ex.generation).reason == "older"
    assert ex.tick(t(5)).action[0] == pytest.approx(t(5))


def test_jittered_ticks_round_to_the_nearest_action():
    ex = ChunkExecutor(DT, action_horizon=8)
    ex.tick(t(0))
    ex.deliver(t(0), chunk(t(0), 8), ex.generation)
    assert ex.tick(t(3) + 0.03).index == 3
    assert ex.tick(t(4) - 0.04).index == 4


def test_bad_settings():
    with pytest.raises(ConfigError):
        ChunkExecutor(0.0, 4)
    with pytest.raises(ConfigError):
        ChunkExecutor(DT, 0)
    with pytest.raises(ConfigError):
        ChunkExecutor(DT, 4, request_lead=-1)
