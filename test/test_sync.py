"""sync.py: frames on the reference clock, nearest within max_age, gaps refused or marked."""
import numpy as np
import pytest
from rawmsgs import JOINTS, camera_info, command, image, joint_state, sim_ticks

from robot_rl.data.bag import typestore
from robot_rl.data.sync import (MSGTYPES, EpisodeAssembler, EpisodeRefused, Stream, SyncConfig, Synchronizer,
                                standard_streams, synchronize)
from robot_rl.errors import ConfigError, DataError

MS = 1_000_000
S = 1_000_000_000


def config(cameras=(), max_age=0.05, on_gap="refuse", ee_pose=False, **kw):
    return SyncConfig(10.0, max_age, JOINTS, standard_streams(cameras=cameras, **kw), on_gap, True, ee_pose)


def msgtypes(cfg):
    return {s.topic: MSGTYPES[s.kind][0] for s in cfg.streams}


def run(cfg, msgs):
    return synchronize(cfg, msgs, msgtypes(cfg), typestore().deserialize_cdr)


def test_frames_align_on_the_reference_clock():
    cfg = config(cameras=("front",), ee_pose=True)
    r = run(cfg, sim_ticks(20, cameras=("front",), success_at=15))
    f = r.frames
    assert list(f) == ["joint_pos", "joint_vel", "ee_pos", "ee_quat", "object_poses", "front_rgb", "action",
                       "reward", "success"]
    # frame k: observation of tick k, the command answering it, reward/success that followed it
    n = r.length
    assert n == 19 and r.trimmed_start == 0 and r.trimmed_end == 1 and r.gaps == []
    np.testing.assert_array_equal(f["joint_pos"][:, 0], np.arange(n))
    np.testing.assert_array_equal(f["object_poses"][:, 0, 0], np.arange(n))
    np.testing.assert_array_equal(f["front_rgb"][:, 0, 0, 0], np.arange(n))
    np.testing.assert_array_equal(f["action"][:, 0], np.arange(n) + 0.5)
    np.testing.assert_array_equal(f["reward"], np.arange(n) + 1)
    np.testing.assert_array_equal(f["success"], np.arange(n) + 1 >= 15)
    assert f["front_rgb"].shape == (n, 48, 64, 3) and f["front_rgb"].dtype == np.uint8
    assert f["joint_pos"].dtype == np.float32 and f["success"].dtype == bool
    np.testing.assert_allclose(np.linalg.norm(f["ee_quat"], axis=1), 1.0, atol=1e-5)


def test_fast_reference_and_jittery_camera_pick_nearest():
    """500 Hz joint states, a 30 Hz camera with +-3 ms jitter, frames at 10 Hz."""
    cfg = config(cameras=("front",), object_poses_topic="", action_topic="", reward_topic="", success_topic="")
    rng = np.random.default_rng(3)
    msgs = []
    t0 = 5_000 * MS
    for i in range(1000):  # 2 s of joint states
        t = t0 + i * 2 * MS
        q = np.zeros(8)
        q[0] = t * 1e-9
        msgs.append((t, "/joint_states", joint_state(t, q)))
    cam_times = [t0 + int(round(j * 1e9 / 30)) + int(rng.integers(-3, 4)) * MS for j in range(61)]
    for j, t in enumerate(cam_times):
        msgs.append((t + 5 * MS, "/camera/front/image_raw", image(t, np.full((4, 6, 3), j, np.uint8))))
        msgs.append((t + 5 * MS, "/camera/front/camera_info", camera_info(t, width=6, height=4)))
    msgs.sort(key=lambda m: m[0])
    r = run(cfg, [(topic, t, raw) for t, topic, raw in msgs])
    frame_t = t0 + np.arange(r.length) * 100 * MS
    np.testing.assert_allclose(r.frames["joint_pos"][:, 0], frame_t * 1e-9, atol=1e-6)
    expected = [int(np.argmin(np.abs(np.array(cam_times) - t))) for t in frame_t]
    np.testing.assert_array_equal(r.frames["front_rgb"][:, 0, 0, 0], expected)
    assert r.length == 20


def test_cross_topic_interleaving_does_not_change_the_episode():
    """Live and from-bag see one order, but the result must not hinge on it: a recorder may take
    one topic up to a few ticks after another (its executor's order); only per-topic order counts."""
    cfg = config(cameras=("front",))
    msgs = sim_ticks(25, cameras=("front",), success_at=20)
    base = run(cfg, msgs)
    rng = np.random.default_rng(7)
    topics = sorted({m[0] for m in msgs})
    for _ in range(3):
        lag = dict(zip(topics, rng.integers(0, 300, len(topics)) * MS))  # per topic: its order is kept
        other = run(cfg, sorted(msgs, key=lambda m: m[1] + lag[m[0]]))
        assert other.length == base.length
        for key in base.frames:
            np.testing.assert_array_equal(other.frames[key], base.frames[key])


def drop(msgs, topic, ticks, dt=100 * MS, t0=1_000 * MS):
    gone = {t0 + k * dt for k in ticks}
    return [m for m in msgs if not (m[0] == topic and any(abs(m[1] - g) < 2 * MS for g in gone))]


def test_gap_refuses_the_episode_naming_topic_and_frames():
    cfg = config(cameras=("front",))
    msgs = drop(sim_ticks(20, cameras=("front",)), "/camera/front/image_raw", [8, 9])
    with pytest.raises(EpisodeRefused, match=r"/camera/front/image_raw .* frames 8-9"):
        run(cfg, msgs)


def test_gap_marked_fills_with_nearest_and_lists_it():
    cfg = config(cameras=("front",), on_gap="mark")
    msgs = drop(sim_ticks(20, cameras=("front",)), "/camera/front/image_raw", [8, 9])
    r = run(cfg, msgs)
    assert r.length == 19
    assert [(g["topic"], g["frames"]) for g in r.gaps] == [("/camera/front/image_raw", [8, 9])]
    px = r.frames["front_rgb"][:, 0, 0, 0]
    assert px[8] == 7 and px[9] == 10  # the nearest message of any age, never invented values
    np.testing.assert_array_equal(np.delete(px, [8, 9]), np.delete(np.arange(19), [8, 9]))


def test_late_start_and_early_end_are_trimmed_not_gaps():
    cfg = config(cameras=("front",))
    msgs = drop(sim_ticks(20, cameras=("front",)), "/camera/front/image_raw", [0, 1, 2, 17, 18, 19])
    r = run(cfg, msgs)
    assert r.trimmed_start == 3 and r.trimmed_end == 3 and r.gaps == []
    np.testing.assert_array_equal(r.frames["joint_pos"][:, 0], np.arange(3, 17))


def test_missing_topic_is_named():
    cfg = config(cameras=("front",))
    msgs = [m for m in sim_ticks(10, cameras=("front",)) if m[0] != "/camera/front/image_raw"]
    with pytest.raises(EpisodeRefused, match="/camera/front/image_raw had no message"):
        run(cfg, msgs)
    with pytest.raises(EpisodeRefused, match="/joint_states"):
        run(cfg, [m for m in sim_ticks(10) if m[0] != "/joint_states"])


def test_mismatched_joint_names_and_command_length_are_named():
    cfg = config()
    bad = [(t, (topic, tt, joint_state(tt, np.zeros(3), names=("a", "b", "c"))) if topic == "/joint_states"
            else (topic, tt, raw)) for t, (topic, tt, raw) in enumerate(sim_ticks(5))]
    with pytest.raises(DataError, match=r"/joint_states: joint names \['a', 'b', 'c'\] lack"):
        run(cfg, [m for _, m in bad])
    short = [(topic, t, command([1.0, 2.0]) if topic.endswith("commands") else raw) for topic, t, raw in sim_ticks(5)]
    with pytest.raises(DataError, match="commands: command has 2 values, expected 8"):
        run(cfg, short)


def test_window_memory_stays_bounded():
    """A long 500 Hz stream: the synchroniser holds a window, not the episode."""
    cfg = config(object_poses_topic="", action_topic="", reward_topic="", success_topic="")
    sync = Synchronizer(cfg, msgtypes(cfg), typestore().deserialize_cdr)
    raw0 = joint_state(0, np.zeros(8))
    longest = 0
    for i in range(30_000):  # 60 s
        t = 1_000 * MS + i * 2 * MS
        sync.add("/joint_states", t, raw0[:4] + int(t // 10**9).to_bytes(4, "little", signed=True)
                 + int(t % 10**9).to_bytes(4, "little") + raw0[12:])
        longest = max(longest, len(sync.clock.frames))  # the reference keeps one message per open frame
    assert longest <= 4
    assert sync.finish().length == 600


def test_assembler_meta_and_intrinsics_checks():
    cfg = config(cameras=("front",))
    mt = msgtypes(cfg)
    asm = EpisodeAssembler(cfg, mt, typestore().deserialize_cdr)
    msgs = sim_ticks(10, cameras=("front",))
    for topic, t, raw in msgs[:3]:
        asm.message(topic, t, raw)
    asm.start({"task": "reach", "source": {"kind": "scripted_expert", "quality": "expert"}}, msgs[3][1])
    for topic, t, raw in msgs[3:]:
        asm.message(topic, t, raw)
    frames, meta = asm.stop(True, msgs[-1][1] + 1)
    assert meta["task"] == "reach" and meta["success"] is True and meta["rate_hz"] == 10.0
    assert meta["camera_intrinsics"] == {"front": [100.0, 100.0, 32.0, 24.0, 64, 48]}
    assert meta["joint_names"] == list(JOINTS) and meta["sync"]["frames"] == len(frames["joint_pos"])
    # camera_info disagreeing with the images is an error naming the camera
    asm.start({}, msgs[-1][1] + 2)
    for topic, t, raw in sim_ticks(10, cameras=("front",), t0_ns=10**10):
        if topic.endswith("camera_info"):
            raw = camera_info(t, width=320, height=240)
        asm.message(topic, t, raw)
    with pytest.raises(DataError, match="camera 'front': images are 64x48 but camera_info says 320x240"):
        asm.stop(False, 2 * 10**10)


def test_config_validation():
    with pytest.raises(ConfigError):
        SyncConfig(0.0, 0.05, JOINTS, standard_streams())
    with pytest.raises(ConfigError):
        SyncConfig(10.0, 0.05, JOINTS, standard_streams(), on_gap="fill")
    with pytest.raises(ConfigError, match="first stream"):
        SyncConfig(10.0, 0.05, JOINTS, (Stream("/x", "reward"),))
    with pytest.raises(ConfigError, match="ee_pose"):
        SyncConfig(10.0, 0.05, ("a", "b"), standard_streams(), ee_pose=True)
    cfg = config(cameras=("front", "wrist"), depth=True)
    assert SyncConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.keys == ["joint_pos", "joint_vel", "object_poses", "front_rgb", "front_depth", "wrist_rgb",
                        "wrist_depth", "action", "reward", "success"]


def test_headerless_topics_take_the_stamped_clock_through_publish_times():
    """Under load the recorder may take reward, success and commands after the next tick's
    /clock (their log times land a tick late). Publish times put them back on their tick."""
    cfg = config(cameras=("front",))
    msgs = sim_ticks(25, cameras=("front",), success_at=20)
    base = run(cfg, msgs)
    wall0, order = 10**18, {}
    skewed = []
    for i, (topic, t, raw) in enumerate(msgs):
        k = (t - S) // (100 * MS)
        publish = wall0 + k * 33 * MS + order.setdefault(topic, len(order)) * 100_000 + (2 * MS if "commands" in topic else 0)
        # success and commands a tick late on some ticks, reward on others: the recorder takes
        # e.g. reward(k + 1) before success(k)
        late = ((topic in ("/task/success", "/forward_position_controller/commands") and k % 3 == 1)
                or (topic == "/task/reward" and k % 4 == 2))
        skewed.append((topic, t + (100 * MS if late else 0), raw, publish))
    skewed.sort(key=lambda m: m[1])  # the order the recorder took them in
    sync = Synchronizer(cfg, msgtypes(cfg), typestore().deserialize_cdr)
    for topic, t, raw, publish in skewed:
        sync.add(topic, t, raw, publish)
    result = sync.finish()
    assert result.length == base.length
    for key in base.frames:
        np.testing.assert_array_equal(result.frames[key], base.frames[key], err_msg=key)
    # without publish times the same skew breaks the alignment (a gap on the late ticks)
    with pytest.raises(EpisodeRefused):
        run(cfg, [m[:3] for m in skewed])


def test_action_is_the_command_in_effect_over_the_frame():
    """`last`: a commander that always answers after the next observation has its command
    executed one tick later, and the frames say so; a period with no command at all is a gap."""
    cfg = config()
    msgs = sim_ticks(12)
    late = [(topic, t + (100 * MS if topic.endswith("commands") else 0), raw) for topic, t, raw in msgs]
    r = run(cfg, sorted(late, key=lambda m: m[1]))
    assert r.trimmed_start == 1  # nothing commanded during the first period
    np.testing.assert_array_equal(r.frames["joint_pos"][:, 0], np.arange(1, 1 + r.length))
    np.testing.assert_array_equal(r.frames["action"][:, 0], np.arange(r.length) + 0.5)
    silent = [m for m in msgs if not (m[0].endswith("commands") and 1_450 * MS < m[1] < 1_550 * MS)]
    with pytest.raises(EpisodeRefused, match="commands had no message in the periods of frames 5-5"):
        run(cfg, silent)
