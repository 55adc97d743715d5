"""recorder.py without ROS: raw messages in, bag + atomic episodes out; errors stop recording.

The ROS node is tested with real DDS in test_recorder_node.py; here the same core gets the same
serialized bytes a subscription would hand it.
"""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from rawmsgs import JOINTS, sim_ticks
from test_bag import ENV, mcap_read, no_write_permission, private_tmpfs

from robot_rl.data import tools
from robot_rl.data.bag import EVENTS_TOPIC, open_bag, read_events
from robot_rl.data.dataset import EpisodeDataset
from robot_rl.data.recorder import Recorder, RecorderConfig
from robot_rl.errors import ConfigError, DataError

S = 1_000_000_000


def make(tmp_path, **kw) -> Recorder:
    cfg = RecorderConfig(**{"dataset": str(tmp_path / "live"), "bag_dir": str(tmp_path / "bags"), "bag_name": "b",
                            "cameras": ("front",), "task": "push", "source_quality": "good", **kw})
    rec = Recorder(cfg)
    rec.open()
    return rec


def feed(rec, msgs, gid=b"pub"):
    for topic, t, raw in msgs:
        rec.on_message(topic, raw, t)


def record_two(rec):
    """Idle messages, a successful episode, a failed one, a discarded one."""
    m1 = sim_ticks(30, cameras=("front",), success_at=25, t0_ns=1 * S)
    m2 = sim_ticks(20, cameras=("front",), t0_ns=10 * S, seed=1)
    m3 = sim_ticks(5, cameras=("front",), t0_ns=20 * S, seed=2)
    feed(rec, m1[:7])
    assert rec.start(log_time_ns=m1[7][1] - 1) == "episode 0 started"
    feed(rec, m1[7:])
    rec.stop(True, log_time_ns=m1[-1][1] + 1)
    rec.start(log_time_ns=m2[0][1] - 1, seed=11)
    feed(rec, m2)
    rec.stop(False, log_time_ns=m2[-1][1] + 1)
    rec.start(log_time_ns=m3[0][1] - 1)
    feed(rec, m3)
    rec.discard(log_time_ns=m3[-1][1] + 1)
    assert rec.wait_idle(60)
    return m1 + m2 + m3


def test_episodes_meta_bag_and_counters(tmp_path):
    rec = make(tmp_path)
    sent = record_two(rec)
    d = rec.diagnostics()
    assert (d["episodes_committed"], d["episodes_refused"], d["episodes_discarded"]) == (2, 0, 1)
    assert d["received"] == d["written"] == len(sent) and d["dropped"] == 0 and d["state"] == "idle"
    rec.close()
    ds = EpisodeDataset.open(tmp_path / "live")
    assert ds.num_episodes == 2 and list(ds.success) == [True, False]
    meta = ds.episode_meta(0)
    assert meta["task"] == "push" and meta["source"] == {"kind": "scripted_expert", "quality": "good"}
    assert meta["joint_names"] == list(JOINTS) and meta["rate_hz"] == 10.0
    assert meta["camera_intrinsics"]["front"] == {"fx": 100.0, "fy": 100.0, "cx": 32.0, "cy": 24.0,
                                                  "width": 64, "height": 48}
    assert ds.episode_meta(1)["seed"] == 11
    ep = ds.load_episode(0)
    assert set(ep) == {"joint_pos", "joint_vel", "ee_pos", "ee_quat", "object_poses", "front_rgb", "action",
                       "reward", "success"}
    np.testing.assert_array_equal(ep["action"][:, 0], ep["joint_pos"][:, 0] + 0.5)
    # the bag: every message as sent, plus the markers; one closed file per episode end
    with open_bag(tmp_path / "bags" / "b") as r:
        counts = {}
        for topic, _, _ in sent:
            counts[topic] = counts.get(topic, 0) + 1
        assert {k: v for k, v in r.info.counts.items() if k != EVENTS_TOPIC and v} == counts
        assert [e["event"] for e in read_events(r)] == ["start", "stop", "start", "stop", "start", "discard"]
        assert len(r.info.files) == 3 and r.info.orphans == []
    assert {t: len(v) for t, v in mcap_read(tmp_path / "bags" / "b").items() if t != EVENTS_TOPIC} == counts


def test_from_bag_equals_live(tmp_path):
    rec = make(tmp_path)
    record_two(rec)
    rec.close()
    reports = tools.from_bag([tmp_path / "bags" / "b"], tmp_path / "frombag", log=lambda s: None)
    assert [c["episode"] for c in reports[0]["committed"]] == [0, 1]
    assert reports[0]["skipped"] == [{"episode": 2, "reason": "discarded"}]
    assert_same_datasets(tmp_path / "live", tmp_path / "frombag")


def test_a_marker_waits_for_the_messages_sent_before_its_call(tmp_path):
    """The node passes the call's wall time: messages published before it that are still queued
    (a busy executor) land before the marker, the first one published after it (any topic: a
    reset's /sim/episode_start or poses may come before the next joint states) after it."""
    rec = make(tmp_path)
    msgs = sim_ticks(30, cameras=("front",), t0_ns=S)
    tick = lambda k: S + k * S // 10  # noqa: E731
    rec.start(wall_ns=tick(5) - 1)  # ticks 0-4 are still queued when the episode starts
    for topic, t, raw in msgs[: len(msgs) // 2]:
        rec.on_message(topic, raw, t, publish_time_ns=t)
    rec.stop(True, wall_ns=tick(20) - 1)  # called while ticks 15-19 are still queued
    for topic, t, raw in msgs[len(msgs) // 2:]:
        rec.on_message(topic, raw, t, publish_time_ns=t)
    assert rec.wait_idle(60)
    rec.close()
    ep = EpisodeDataset.open(tmp_path / "live").load_episode(0)
    # ticks 5-19; tick 19 has no reward after it in the episode (reward leads by one): trimmed
    np.testing.assert_array_equal(ep["joint_pos"][:, 0], np.arange(5, 19))
    np.testing.assert_array_equal(ep["action"][:, 0], np.arange(5, 19) + 0.5)
    with open_bag(tmp_path / "bags" / "b") as r:
        events = read_events(r)
        assert [(e["event"], e["wall_ns"]) for e in events] == [("start", tick(5) - 1), ("stop", tick(20) - 1)]


def assert_same_datasets(a, b):
    a, b = EpisodeDataset.open(a), EpisodeDataset.open(b)
    assert a.num_episodes == b.num_episodes > 0
    assert a.keys == b.keys
    for i in range(a.num_episodes):
        assert a.episode_meta(i) == b.episode_meta(i)
        ea, eb = a.load_episode(i), b.load_episode(i)
        for key in ea:
            np.testing.assert_array_equal(ea[key], eb[key], err_msg=f"episode {i} key {key}")


def camera_gap():
    return [m for m in sim_ticks(30, cameras=("front",), t0_ns=S)
            if not (m[0] == "/camera/front/image_raw" and 10 * S // 10 + S <= m[1] < 14 * S // 10 + S)]


def test_gap_drops_its_frames_counted_in_the_meta(tmp_path):
    rec = make(tmp_path)  # on_gap drop: the default
    msgs = camera_gap()
    rec.start(log_time_ns=S - 1)
    feed(rec, msgs)
    rec.stop(True, log_time_ns=msgs[-1][1] + 1)
    assert rec.wait_idle(30)
    assert rec.diagnostics()["episodes_committed"] == 1
    rec.close()
    ds = EpisodeDataset.open(tmp_path / "live")
    sync = ds.episode_meta(0)["sync"]
    assert sync["dropped"] == 4 and [d["frame"] for d in sync["dropped_frames"]] == [10, 11, 12, 13]
    assert {d["topic"] for d in sync["dropped_frames"]} == {"/camera/front/image_raw"}
    assert ds.episode_lengths[0] == 29 - 4
    px = ds.load_episode(0)["front_rgb"][:, 0, 0, 0]
    np.testing.assert_array_equal(px, [k for k in range(29) if not 10 <= k <= 13])  # never a filled frame


def test_gap_refuses_episode_but_bag_keeps_it(tmp_path):
    rec = make(tmp_path, on_gap="refuse")
    msgs = camera_gap()
    rec.start(log_time_ns=S - 1)
    feed(rec, msgs)
    rec.stop(True, log_time_ns=msgs[-1][1] + 1)
    assert rec.wait_idle(30)
    d = rec.diagnostics()
    assert d["episodes_refused"] == 1 and d["episodes_committed"] == 0
    assert d["last_result"]["status"] == "refused"
    assert "/camera/front/image_raw had no message within max_age 0.05 s of frames 10-13" in d["last_result"]["reason"]
    rec.close()
    with open_bag(tmp_path / "bags" / "b") as r:
        assert r.info.counts["/joint_states"] == 30
    with pytest.raises(DataError, match="no episode could be converted .* frames 10-13"):
        tools.from_bag([tmp_path / "bags" / "b"], tmp_path / "frombag", log=lambda s: None)


def test_transport_drops_are_counted_from_sequence_numbers(tmp_path):
    rec = make(tmp_path, dataset="")
    msgs = [m for m in sim_ticks(10) if m[0] == "/joint_states"]
    for seq, (topic, t, raw) in zip([1, 2, 5, 6, 9], msgs):
        rec.on_message(topic, raw, t, publisher=b"A", sequence=seq)
    rec.on_message(msgs[5][0], msgs[5][2], msgs[5][1], publisher=b"B", sequence=40)  # a late joiner: no gap
    rec.on_lost("/joint_states", 2)
    assert rec.wait_idle(10)
    st = rec.diagnostics()["topics"]["/joint_states"]
    assert st["dropped_transport"] == 4 and st["lost_events"] == 2 and st["dropped"] == 6
    assert st["received"] == st["written"] == 6
    rec.close()


def test_lifecycle_errors_and_config(tmp_path):
    rec = make(tmp_path)
    with pytest.raises(DataError, match="no episode is open"):
        rec.stop(True)
    rec.start()
    with pytest.raises(DataError, match="episode 0 is open"):
        rec.start()
    rec.close()  # an open episode at shutdown is discarded, never committed unlabelled
    with open_bag(tmp_path / "bags" / "b") as r:
        assert [(e["event"], e.get("reason")) for e in read_events(r)] == [("start", None),
                                                                           ("discard", "recorder shut down")]
    with pytest.raises(ConfigError):
        RecorderConfig(on_gap="fill")
    with pytest.raises(ConfigError):
        RecorderConfig(extra_topics=("/clock",))
    with pytest.raises(ConfigError, match="source_kind"):
        RecorderConfig(source_kind="robot")


def test_existing_dataset_with_other_joints_is_refused_at_open(tmp_path):
    EpisodeDataset.create(tmp_path / "live", {"joint_names": ["a", "b"], "rate_hz": 10})
    with pytest.raises(DataError, match="joint_names .* differs"):
        make(tmp_path)


CHILD = textwrap.dedent("""
    import sys, time
    from rawmsgs import sim_ticks
    from robot_rl.data.recorder import Recorder, RecorderConfig
    S = 1_000_000_000
    cfg = RecorderConfig(dataset=sys.argv[1], bag_dir=sys.argv[2], bag_name=sys.argv[3], cameras=("front",),
                         task="push")
    rec = Recorder(cfg, log=lambda level, text: print(level, text, flush=True))
    rec.open()
    mode = sys.argv[4]
    for e in range(1000):
        msgs = sim_ticks(20, cameras=("front",), t0_ns=(1 + 10 * e) * S, image_size=(320, 240), seed=e)
        rec.start(log_time_ns=msgs[0][1] - 1)
        for topic, t, raw in msgs:
            rec.on_message(topic, raw, t)
        if mode == "kill" and e == 2:
            rec.wait_idle(30)
            print("EPISODE 2 OPEN", flush=True)
            time.sleep(600)
        rec.stop(e % 2 == 0, log_time_ns=msgs[-1][1] + 1)
        rec.wait_idle(30)
        if rec.error:
            print("ERROR", rec.error, flush=True)
            sys.exit(2)
        if mode != "fill" and e == 3:
            break
    rec.close()
""")


@pytest.mark.integration
def test_sigkill_mid_episode_loses_only_that_episode(tmp_path):
    """A real process killed with SIGKILL while episode 2 is open: episodes 0-1 intact, the bag
    readable, from-bag gives the same two; a restarted recorder appends to the same dataset."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "live"), str(tmp_path / "bags"), "b", "kill"],
                            env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        lines = []
        while not lines or lines[-1] != "EPISODE 2 OPEN":
            line = proc.stdout.readline()
            assert line, f"child ended early: {lines}"
            lines.append(line.strip())
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    ds = EpisodeDataset.open(tmp_path / "live")
    assert ds.num_episodes == 2 and [ds.episode_meta(i)["success"] for i in range(2)] == [True, False]
    for i in range(2):
        assert len(ds.load_episode(i)["joint_pos"]) == 19
    bag = tmp_path / "bags" / "b"
    with open_bag(bag) as r:  # readable as is: the two episodes' files
        assert [e["event"] for e in read_events(r)] == ["start", "stop", "start", "stop"]
        assert r.info.counts["/joint_states"] == 40 and r.info.orphans == ["b.mcap"]
    tools.from_bag([bag], tmp_path / "frombag", log=lambda s: None)
    assert_same_datasets(tmp_path / "live", tmp_path / "frombag")
    # restart: a new bag, the same dataset, episodes keep their numbers
    out = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "live"), str(tmp_path / "bags"), "b2", "run"],
                         env=ENV, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert EpisodeDataset.open(tmp_path / "live").num_episodes == 6
    assert not [p for p in (tmp_path / "live" / "episodes").iterdir() if not p.name.startswith("episode_")]
    # the killed bag's open file still has the open episode's flushed chunks
    assert "b.mcap" in tools.repair_bag(bag)


@pytest.mark.integration
def test_disk_full_stops_recording_with_one_error(tmp_path):
    fs = private_tmpfs(tmp_path, size="24m")
    if fs is None:
        pytest.skip("needs root and unshare to mount a small private tmpfs")
    mnt, prefix = fs
    out = subprocess.run(prefix + [sys.executable, "-c", CHILD, str(mnt / "live"), str(mnt / "bags"), "b", "fill"],
                         env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stdout + out.stderr
    errors = [line for line in out.stdout.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1, out.stdout
    assert "No space left on device (disk full; free space or record to another disk)" in errors[0]
    assert str(mnt) in errors[0]


@pytest.mark.integration
def test_permission_denied_at_open_is_one_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    prefix = no_write_permission(ro)
    if prefix is None:
        pytest.skip("cannot drop root's permission override")
    code = textwrap.dedent("""
        import sys
        from robot_rl.data.recorder import Recorder, RecorderConfig
        from robot_rl.errors import DataError
        try:
            Recorder(RecorderConfig(bag_dir=sys.argv[1] + "/bags")).open()
        except DataError as e:
            print(e)
            sys.exit(2)
    """)
    try:
        out = subprocess.run(prefix + [sys.executable, "-c", code, str(ro)], env=ENV, capture_output=True,
                             text=True, timeout=60)
    finally:
        ro.chmod(0o755)
    assert out.returncode == 2
    assert out.stdout.strip() == f"bag directory {ro}/bags: cannot create (Permission denied (no write permission; " \
                                 "choose a writable directory))"


_ = (time, Path)


@pytest.mark.parametrize("rate, idle_kept", [(0.0, 0), (2.0, 2)])
def test_between_episodes_the_bag_pauses_or_keeps_a_rate(tmp_path, rate, idle_kept):
    """The record_demos bag grew ~2.7 MB/s with no episode running; idle_rate_hz bounds it."""
    rec = make(tmp_path, idle_rate_hz=rate)
    idle = sim_ticks(10, cameras=("front",), t0_ns=1 * S)  # 1 s of every stream, no episode
    episode = sim_ticks(12, cameras=("front",), t0_ns=5 * S, seed=1)
    feed(rec, idle)
    rec.start(log_time_ns=episode[0][1] - 1)
    feed(rec, episode)
    rec.stop(True, log_time_ns=episode[-1][1] + 1)
    feed(rec, sim_ticks(10, cameras=("front",), t0_ns=9 * S, seed=2))  # after the episode: idle again
    assert rec.wait_idle(30)
    stats = rec.diagnostics()["topics"]
    rec.close()
    assert rec.committed == 1
    with open_bag(tmp_path / "bags" / "b") as r:
        counts = r.info.counts
    for topic in ("/joint_states", "/camera/front/image_raw", "/task/object_poses"):
        assert counts[topic] == 12 + 2 * idle_kept, topic  # the episode whole, idle at most `rate`
        assert stats[topic]["idle_skipped"] == 20 - 2 * idle_kept and stats[topic]["dropped"] == 0
    assert counts["/camera/front/camera_info"] == 32  # always kept: the intrinsics of the next episode
    assert EpisodeDataset.open(tmp_path / "live").episode_lengths[0] == 11
