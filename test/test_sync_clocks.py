"""sync.py on real clocks: generated episodes (clock_bags.py) with jitter up to 40 % of the
period, late and early first stamps, lost, duplicated and reordered messages, clock jumps and
success on change. Every kept frame is checked exactly against the tick it came from, and the
count of dropped frames against what was lost."""
from __future__ import annotations

import numpy as np
import pytest
from clock_bags import MS, PERIOD, Truth, clock_episode
from rawmsgs import JOINTS

from robot_rl.data.bag import typestore
from robot_rl.data.sync import MSGTYPES, Stream, SyncConfig, Synchronizer, standard_streams


def config(on_gap="drop", success_mode="hold", max_age=0.05):
    streams = tuple(Stream(s.topic, s.kind, s.name, success_mode if s.kind == "success" else s.mode, s.lead)
                    for s in standard_streams())
    return SyncConfig(10.0, max_age, JOINTS, streams, on_gap)


def run(cfg, messages):
    sync = Synchronizer(cfg, {s.topic: MSGTYPES[s.kind][0] for s in cfg.streams}, typestore().deserialize_cdr)
    for topic, log, raw, publish in messages:
        sync.add(topic, log, raw, publish)
    return sync.finish()


def check_exact(result, truth: Truth):
    """Every frame is one tick's: its observation, the command that answered it, the reward that followed."""
    f = result.frames
    ticks = f["joint_pos"][:, 0].astype(int)
    assert np.all(np.diff(ticks) > 0)
    np.testing.assert_array_equal(f["object_poses"][:, 0, 0], ticks)
    np.testing.assert_array_equal(f["action"][:, 0], ticks + 0.5)
    np.testing.assert_array_equal(f["reward"], ticks + 1)
    if truth.success_at is not None:
        np.testing.assert_array_equal(f["success"], ticks + 1 >= truth.success_at)
    return ticks


def expected_frames(truth: Truth) -> list[int]:
    return [k for k in range(truth.ticks) if truth.complete(k)]


@pytest.mark.parametrize("jitter", [0.0, 0.05, 0.1, 0.2, 0.3, 0.4])
@pytest.mark.parametrize("publish_times", [True, False])
def test_jitter_up_to_40_percent_loses_nothing(jitter, publish_times):
    for seed in range(10):
        messages, truth = clock_episode(seed=seed, jitter=jitter, publish_times=publish_times)
        result = run(config(), messages)
        assert list(check_exact(result, truth)) == expected_frames(truth)
        assert result.dropped == [] and result.trimmed_start == 0 and result.trimmed_end == 1


@pytest.mark.parametrize("first", [-0.3, -0.2, 0.015, 0.2, 0.3])
def test_a_late_or_early_first_stamp_shifts_nothing(first):
    """The grid is phase-locked to all the first messages, not anchored on the first one
    (a first stamp 1.5 ms late used to shift every action label by one step)."""
    messages, truth = clock_episode(seed=3, jitter=0.1, first=first)
    result = run(config(), messages)
    assert list(check_exact(result, truth)) == expected_frames(truth)


@pytest.mark.parametrize("jitter", [0.0, 0.2, 0.4])
def test_lost_messages_drop_exactly_their_frames_and_say_so(jitter):
    for seed in range(10):
        messages, truth = clock_episode(seed=100 + seed, jitter=jitter, lose=0.05)
        result = run(config(), messages)
        kept = list(check_exact(result, truth))
        expected = expected_frames(truth)
        assert kept == expected
        first, last = expected[0], expected[-1]
        inside = [k for k in range(first, last + 1) if k not in expected]
        assert sorted(d["frame"] + first for d in result.dropped) == inside
        assert all(d["reason"] and d["topic"] for d in result.dropped)
        assert result.report()["dropped"] == len(inside)


def test_duplicated_and_reordered_messages_change_nothing():
    for seed in range(10):
        messages, truth = clock_episode(seed=200 + seed, jitter=0.2, duplicate=0.1, reorder=0.1)
        result = run(config(), messages)
        assert list(check_exact(result, truth)) == expected_frames(truth)
        assert result.clock["collisions"] > 0  # the duplicates were seen, and one of each kept


@pytest.mark.parametrize("jump_s", [-3.0, -0.8, 5.0, 1000.0])
@pytest.mark.parametrize("jump_at", [10, 45])  # before the grid's phase is known, and after
def test_a_clock_jump_is_followed(jump_s, jump_at):
    """The sim clock restarts (or leaps) mid-episode while the recording goes on: the grid follows
    the stamps; frames are kept exact, and the four around the jump (whose messages cannot be
    told apart) are dropped and counted (never the episode)."""
    messages, truth = clock_episode(seed=7, jitter=0.1, jump_at=jump_at, jump_s=jump_s)
    result = run(config(), messages)
    ticks = check_exact(result, truth)
    assert result.clock["jumps"] == 1
    missing = sorted(set(expected_frames(truth)) - set(ticks))
    assert len(result.dropped) == len(missing) and all(jump_at - 2 <= k <= jump_at + 1 for k in missing)
    assert len(missing) <= 4


def test_success_published_on_change_is_held_not_lost():
    """A publisher that sends /task/success only when it changes: mode `hold` keeps the level
    (nearest would find nothing within max_age and drop every other frame)."""
    messages, truth = clock_episode(seed=11, jitter=0.2, success_at=40, success_on_change=True)
    result = run(config(success_mode="hold"), messages)
    assert list(check_exact(result, truth)) == expected_frames(truth)
    # the same bag with success as a level (published every tick) gives the same frames
    level, _ = clock_episode(seed=11, jitter=0.2, success_at=40)
    np.testing.assert_array_equal(run(config(success_mode="hold"), level).frames["success"], result.frames["success"])


def test_a_long_gap_refuses_and_refuse_mode_refuses_any():
    messages, truth = clock_episode(seed=5, jitter=0.1)
    t0 = messages[0][1]
    gap = [m for m in messages if not (m[0] == "/joint_states" and t0 + 1_000 * MS < m[1] < t0 + 2_600 * MS)]
    with pytest.raises(Exception, match=r"/joint_states had no message for frames .*longer than max_gap 1.0 s"):
        run(config(), gap)
    one = [m for m in messages if not (m[0] == "/forward_position_controller/commands"
                                       and t0 + 1_000 * MS < m[1] < t0 + 1_100 * MS)]
    assert len(run(config(), one).dropped) == 1
    with pytest.raises(Exception, match=r"commands had no message in the periods of frames 10-10"):
        run(config(on_gap="refuse"), one)


def test_an_episode_announced_after_its_start_marker_begins_at_its_first_observation():
    """The recorder is started just before the sim's reset (robot-rl episodes does so): the old
    episode's last frames come after the marker, and /sim/episode_start (stamped with the new first
    observation) may even be taken after that observation. The episode is the new one, whole."""
    from rawmsgs import header

    from robot_rl.data.sync import HEADER_TYPE, EpisodeAssembler

    old, _ = clock_episode(ticks=10, seed=1, jitter=0.1)
    t_new = 100_000 * MS + 10 * PERIOD + 3 * MS  # the reset moved the phase a little
    new, truth = clock_episode(ticks=40, seed=2, jitter=0.1, t0=t_new)
    first_js = next(m for m in new if m[0] == "/joint_states")
    marker = old[len(old) * 7 // 10][1] - 1  # ~/start during the old episode's last frames
    announce = ("/sim/episode_start", first_js[1] + 1, header(_stamp_of(first_js[2])), first_js[1] + 1)
    messages = sorted(old + new + [announce], key=lambda m: m[1])

    def assemble(cfg):
        msgtypes = {s.topic: MSGTYPES[s.kind][0] for s in cfg.streams} | {"/sim/episode_start": HEADER_TYPE}
        asm = EpisodeAssembler(cfg, msgtypes, typestore().deserialize_cdr)
        started = False
        for topic, log, raw, publish in messages:
            if not started and log > marker:
                asm.start({}, marker)
                started = True
            asm.message(topic, log, raw, publish)
        return asm.stop(True, messages[-1][1] + 1)

    import dataclasses

    frames, meta = assemble(dataclasses.replace(config(), episode_start_topic="/sim/episode_start"))
    ticks = frames["joint_pos"][:, 0].astype(int)
    assert list(ticks) == expected_frames(truth)  # 0, 1, ...: from the first observation on
    np.testing.assert_array_equal(frames["action"][:, 0], ticks + 0.5)
    assert meta["sync"]["trimmed_start"] == 0 and meta["sync"]["before_begin"] > 0
    assert meta["sync"]["begin_ns"] == _stamp_of(first_js[2])
    # an announcement later than the window: the episode would mix two, so it is refused
    from robot_rl.data.sync import EpisodeRefused

    late = dataclasses.replace(config(), episode_start_topic="/sim/episode_start", episode_start_window=0.05)
    with pytest.raises(EpisodeRefused, match="later than episode_start_window 0.05 s"):
        assemble(late)
    # without the announcement the old episode's last frames lead the episode
    frames, _ = assemble(config())
    assert frames["joint_pos"][0, 0] > 0 and len(frames["joint_pos"]) > len(ticks)


def _stamp_of(raw) -> int:
    from robot_rl.data.bag import header_stamp_ns

    return header_stamp_ns(raw)
