"""`robot-rl dataset`: from-bag (foreign bags, errors), info, merge, split, export (LeRobot v3),
repair-bag, the follow API, and the CLI's one-line errors with exit code 2."""
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from rawmsgs import JOINTS, sim_ticks
from test_bag import ENV, MSGTYPES

from robot_rl.data import tools
from robot_rl.data.bag import write_bag
from robot_rl.data.dataset import EpisodeDataset
from robot_rl.data.follow import EpisodeFollower
from robot_rl.data.lerobot import export_lerobot
from robot_rl.errors import DataError

REPO = Path(__file__).resolve().parents[1]
S = 1_000_000_000


def foreign_bag(path, n=30, cameras=("front",), success_at=20, drop_topic=None, t0=S, seed=0):
    """A bag as `ros2 bag record` of the standard topics makes it: no recorder markers."""
    msgs = [m for m in sim_ticks(n, cameras=cameras, success_at=success_at, t0_ns=t0, seed=seed) if m[0] != drop_topic]
    return write_bag(path, [(topic, MSGTYPES[topic], t, raw) for topic, t, raw in msgs])


def cli(*args):
    return subprocess.run([sys.executable, "-m", "robot_rl.cli", *map(str, args)], env=ENV, capture_output=True,
                          text=True, timeout=120)


def test_from_bag_of_a_foreign_bag(tmp_path):
    bag = foreign_bag(tmp_path / "b")
    out = cli("dataset", "from-bag", bag, "--out", tmp_path / "d", "--task", "push", "--source-kind", "teleop")
    assert out.returncode == 0, out.stderr
    ds = EpisodeDataset.open(tmp_path / "d")
    assert ds.num_episodes == 1 and ds.episode_lengths[0] == 29
    meta = ds.episode_meta(0)
    assert meta["success"] is True and meta["task"] == "push" and meta["source"] == {"kind": "teleop"}
    assert set(ds.keys) == {"joint_pos", "joint_vel", "ee_pos", "ee_quat", "object_poses", "front_rgb", "action",
                            "reward", "success"}
    ep = ds.load_episode(0)
    np.testing.assert_array_equal(ep["action"][:, 0], np.arange(29) + 0.5)
    # a second bag appends; without a success topic the label must be given
    bag2 = foreign_bag(tmp_path / "b2", success_at=None, t0=100 * S, seed=1)
    tools.from_bag([bag2], tmp_path / "d", tools._defaults(), log=lambda s: None)
    assert EpisodeDataset.open(tmp_path / "d").success.tolist() == [True, False]


def test_from_bag_errors_are_one_line_exit_2(tmp_path):
    bag = foreign_bag(tmp_path / "b", drop_topic="/camera/front/image_raw")
    # asking for a camera the bag does not have: names the topic
    out = cli("dataset", "from-bag", bag, "--out", tmp_path / "d", "--cameras", "front")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"error: bag {bag}: camera 'front' topic /camera/front/image_raw is missing (topics in the bag: "
        "/camera/front/camera_info, /forward_position_controller/commands, /joint_states, /task/object_poses, "
        "/task/reward, /task/success)"]
    # joint names that are not the dataset's
    out = cli("dataset", "from-bag", foreign_bag(tmp_path / "b3"), "--out", tmp_path / "d3", "--joint-names", "a", "b",
              "--no-ee-pose")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "/joint_states: joint names" in out.stderr and "lack ['a', 'b']" in out.stderr
    # truncated bag
    trunc = tmp_path / "t"
    shutil.copytree(foreign_bag(tmp_path / "b4"), trunc)
    f = next(trunc.glob("*.mcap"))
    f.write_bytes(f.read_bytes()[:5000])
    out = cli("dataset", "from-bag", trunc, "--out", tmp_path / "d4")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert out.stderr.startswith(f"error: bag {trunc}:")
    # no bag at all
    out = cli("dataset", "from-bag", tmp_path / "nothing", "--out", tmp_path / "d5")
    assert out.returncode == 2 and out.stderr.strip() == f"error: bag {tmp_path / 'nothing'}: does not exist"
    assert not (tmp_path / "d4").exists() or EpisodeDataset.open(tmp_path / "d4").num_episodes == 0


def make_dataset(path, n_episodes=4, cameras=("front",), t_offset=0, joint_names=JOINTS):
    for e in range(n_episodes):
        bag = foreign_bag(Path(str(path) + f"-bag{e}"), n=12 + e, cameras=cameras, success_at=8 if e % 2 == 0 else None,
                          t0=(1 + 100 * e + t_offset) * S, seed=e)
        args = tools._defaults()
        args.task, args.success, args.joint_names = ("push" if e < 3 else "lift"), "auto", list(joint_names)
        tools.convert_bag(bag, path, args, log=lambda s: None)
    return EpisodeDataset.open(path)


def test_info_merge_split(tmp_path):
    make_dataset(tmp_path / "a", 4)
    make_dataset(tmp_path / "b", 2, t_offset=7)
    out = cli("dataset", "info", tmp_path / "a", "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["episodes"] == 4 and info["frames"] == 11 + 12 + 13 + 14 and info["success_rate"] == 0.5
    assert info["length"] == {"min": 11, "mean": 12.5, "max": 14} and info["tasks"] == {"push": 3, "lift": 1}
    assert info["keys"]["front_rgb"] == {"shape": [48, 64, 3], "dtype": "uint8"}
    assert "front_rgb" in cli("dataset", "info", tmp_path / "a").stdout
    merged = tools.merge([tmp_path / "a", tmp_path / "b"], tmp_path / "m")
    assert merged.num_episodes == 6
    np.testing.assert_array_equal(merged.load_episode(4)["front_rgb"],
                                  EpisodeDataset.open(tmp_path / "b").load_episode(0)["front_rgb"])
    train, val = tools.split(tmp_path / "m", tmp_path / "tr", tmp_path / "va", 0.34, seed=3)
    assert sorted(train + val) == list(range(6)) and len(val) == 2
    assert tools.split(tmp_path / "m", tmp_path / "tr2", tmp_path / "va2", 0.34, seed=3) == (train, val)
    va = EpisodeDataset.open(tmp_path / "va")
    assert va.num_episodes == 2 and va.meta["split"]["episodes"] == val
    assert va.episode_meta(0) == merged.episode_meta(val[0])
    # other joints do not merge
    EpisodeDataset.create(tmp_path / "x", {"joint_names": ["a"], "rate_hz": 10})
    with pytest.raises(DataError, match="joint_names"):
        tools.merge([tmp_path / "a", tmp_path / "x"], tmp_path / "m2")
    out = cli("dataset", "merge", tmp_path / "a", tmp_path / "x", "--out", tmp_path / "m3")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1


def test_export_lerobot_v3(tmp_path):
    ds = make_dataset(tmp_path / "a", 3)
    out = cli("dataset", "export", tmp_path / "a", "--format", "lerobot", "--out", tmp_path / "le")
    assert out.returncode == 0, out.stderr
    root = tmp_path / "le"
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 10.0 and info["total_episodes"] == 3
    assert info["total_frames"] == int(ds.episode_lengths.sum()) and info["splits"] == {"train": "0:3"}
    f = info["features"]
    assert f["observation.state"] == {"dtype": "float32", "shape": [8], "names": list(JOINTS)}
    assert f["observation.images.front"]["dtype"] == "image" and f["observation.images.front"]["shape"] == [48, 64, 3]
    assert f["observation.environment_state"]["shape"] == [7] and f["observation.ee_pose"]["shape"] == [7]
    data = pq.read_table(root / info["data_path"].format(chunk_index=0, file_index=0))
    assert set(data.column_names) == set(f)
    assert data.column("index").to_pylist() == list(range(info["total_frames"]))
    episodes = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [e["length"] for e in episodes] == ds.episode_lengths.tolist()
    assert [e["tasks"] for e in episodes] == [["push"]] * 3
    e1 = episodes[1]
    rows = data.slice(e1["dataset_from_index"], e1["length"]).to_pydict()
    ep = ds.load_episode(1)
    np.testing.assert_array_equal(np.array(rows["observation.state"], np.float32), ep["joint_pos"])
    np.testing.assert_array_equal(np.array(rows["action"], np.float32), ep["action"])
    np.testing.assert_array_equal(np.array(rows["next.reward"], np.float32), ep["reward"])
    assert rows["episode_index"] == [1] * e1["length"] and rows["frame_index"] == list(range(e1["length"]))
    assert rows["next.done"][-1] is True and not any(rows["next.done"][:-1])
    png = rows["observation.images.front"][3]["bytes"]
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    np.testing.assert_array_equal(image, ep["front_rgb"][3])
    tasks = pq.read_table(root / "meta" / "tasks.parquet")
    assert tasks.column("__index_level_0__").to_pylist() == ["push"] and b"pandas" in tasks.schema.metadata
    stats = json.loads((root / "meta" / "stats.json").read_text())
    assert np.array(stats["observation.images.front"]["mean"]).shape == (3, 1, 1)
    np.testing.assert_allclose(stats["action"]["max"][0], max(ds.load_episode(i)["action"][:, 0].max() for i in range(3)))
    with pytest.raises(DataError, match="already exists"):
        export_lerobot(tmp_path / "a", root)


def test_repair_bag_cli(tmp_path):
    out = cli("dataset", "repair-bag", foreign_bag(tmp_path / "b"))
    assert out.returncode == 0 and "nothing to repair" in out.stdout


@pytest.mark.integration
def test_follower_sees_episodes_committed_after_it_started(tmp_path):
    """A trainer process following the dataset picks up an episode committed after it started."""
    ds = make_dataset(tmp_path / "a", 1)
    code = ("import sys\n"
            "from robot_rl.data.follow import EpisodeFollower\n"
            "f = EpisodeFollower(sys.argv[1], poll_s=0.05)\n"
            "print('READY', f.seen, flush=True)\n"
            "new = f.wait(timeout=60)\n"
            "print('NEW', new, len(f.dataset.load_episode(new[0])['joint_pos']), flush=True)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "a")], env=ENV, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().split() == ["READY", "1"]
        frames = ds.load_episode(0)
        ds.append_episode(frames, {**ds.episode_meta(0), "bag": "another-bag"})  # not the same episode again
        assert proc.stdout.readline().split() == ["NEW", "[1]", str(len(frames["joint_pos"]))]
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_follower_waits_for_a_dataset_that_does_not_exist_yet(tmp_path):
    f = EpisodeFollower(tmp_path / "later", start=0, poll_s=0.01)
    assert f.poll() == [] and f.dataset is None
    stop = threading.Event()
    stop.set()
    assert f.wait(stop=stop) == []
    make_dataset(tmp_path / "later", 2)
    assert f.wait(timeout=5) == [0, 1] and f.poll() == []


def mcap_ros2_bag(path, jitter_ms: float, seed: int, success_on_change=False, n=40):
    """A single-file MCAP written by another library (mcap_ros2's writer: publish_time = log_time,
    no metadata.yaml), joint-state stamps jittered by +-jitter_ms."""
    from mcap_ros2.writer import Writer

    from robot_rl.data.bag import typestore

    store = typestore()
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        w = Writer(f)
        schemas = {t: w.register_msgdef(m, store.generate_msgdef(m, ros_version=2)[0]) for t, m in MSGTYPES.items()
                   if not t.startswith("/camera")}

        def write(topic, msg, t):
            w.write_message(topic, schemas[topic], msg, log_time=t, publish_time=t)

        for k in range(n):
            g = S + k * 100_000_000
            stamp = g + int(rng.uniform(-jitter_ms, jitter_ms) * 1e6)
            header = {"stamp": {"sec": stamp // S, "nanosec": stamp % S}, "frame_id": ""}
            pose = {"position": {"x": float(k), "y": 0.0, "z": 0.0}, "orientation": {"w": 1.0, "x": 0.0, "y": 0.0, "z": 0.0}}
            write("/task/object_poses", {"header": {"stamp": {"sec": g // S, "nanosec": g % S}, "frame_id": ""},
                                          "poses": [pose]}, g + 100_000)
            write("/task/reward", {"data": float(k)}, g + 200_000)
            if not success_on_change or k in (0, 30):
                write("/task/success", {"data": k >= 30}, g + 300_000)
            write("/joint_states", {"header": header, "name": list(JOINTS), "position": [float(k)] + [0.0] * 7,
                                    "velocity": [0.0] * 8, "effort": []}, g + 400_000)
            write("/forward_position_controller/commands",
                  {"layout": {"dim": [], "data_offset": 0}, "data": [k + 0.5] + [0.0] * 7}, g + 1_400_000)
        w.finish()
    return path


@pytest.mark.parametrize("jitter_ms", [0.0, 1.0, 2.0, 20.0])
def test_single_file_mcap_from_another_library_with_jittered_stamps(tmp_path, jitter_ms):
    """3 of 10 such bags were refused at +-1 ms, 5 of 10 at +-2 ms; now none, at +-20 ms (20 % of the period) either."""
    for seed in range(10):
        bag = mcap_ros2_bag(tmp_path / f"b{seed}.mcap", jitter_ms, seed)
        out = tmp_path / f"d{seed}"
        tools.from_bag([bag], out, tools._defaults(), log=lambda s: None)
        ep = EpisodeDataset.open(out).load_episode(0)
        k = ep["joint_pos"][:, 0]
        np.testing.assert_array_equal(k, np.arange(39))
        np.testing.assert_array_equal(ep["action"][:, 0], k + 0.5)  # exactly the command that answered it
        np.testing.assert_array_equal(ep["object_poses"][:, 0, 0], k)
        np.testing.assert_array_equal(ep["reward"], k + 1)


def test_success_published_on_change_labels_every_frame(tmp_path):
    """It used to commit 1 frame of 50, exit 0."""
    bag = mcap_ros2_bag(tmp_path / "b.mcap", 1.0, 0, success_on_change=True)
    tools.from_bag([bag], tmp_path / "d", tools._defaults(), log=lambda s: None)
    ds = EpisodeDataset.open(tmp_path / "d")
    ep = ds.load_episode(0)
    assert len(ep["success"]) == 39 and ds.episode_meta(0)["success"] is True
    np.testing.assert_array_equal(ep["success"], np.arange(39) + 1 >= 30)


def test_a_bag_without_commands_needs_an_explicit_action_choice(tmp_path):
    bag = foreign_bag(tmp_path / "b", drop_topic="/forward_position_controller/commands")
    with pytest.raises(DataError, match="no /forward_position_controller/commands topic for the actions.*"
                                        "--actions next-joint-states"):
        tools.from_bag([bag], tmp_path / "d", tools._defaults(), log=lambda s: None)
    assert not (tmp_path / "d").exists()  # refused before anything was written
    args = tools._defaults()
    args.actions = "next-joint-states"
    tools.from_bag([bag], tmp_path / "d", args, log=lambda s: None)
    ds = EpisodeDataset.open(tmp_path / "d")
    ep = ds.load_episode(0)
    np.testing.assert_array_equal(ep["action"][:-1], ep["joint_pos"][1:])
    assert ds.episode_meta(0)["actions"] == "next joint states"


def test_converting_twice_or_merging_with_itself_adds_nothing(tmp_path):
    bag = foreign_bag(tmp_path / "b")
    tools.from_bag([bag], tmp_path / "d", tools._defaults(), log=lambda s: None)
    with pytest.raises(DataError, match="already its episode 0"):
        tools.from_bag([bag], tmp_path / "d", tools._defaults(), log=lambda s: None)
    assert EpisodeDataset.open(tmp_path / "d").num_episodes == 1
    make_dataset(tmp_path / "a", 3)
    said = []
    assert tools.merge([tmp_path / "a", tmp_path / "a"], tmp_path / "m", log=said.append).num_episodes == 3
    assert len(said) == 3 and all("skipped" in s and "already" in s for s in said)


def test_repair_bag_keeps_the_original(tmp_path):
    from robot_rl.data.bag import repair_bag

    bag = foreign_bag(tmp_path / "b")
    (bag / "metadata.yaml").unlink()
    original = next(bag.glob("*.mcap"))
    data = original.read_bytes()
    repair_bag(bag)
    kept = bag / (original.name + ".orig")
    assert kept.read_bytes() == data  # never destroyed
    tools.from_bag([bag], tmp_path / "d", tools._defaults(), log=lambda s: None)
    assert EpisodeDataset.open(tmp_path / "d").num_episodes == 1


def test_a_markerless_bag_with_pauses_gives_one_episode_per_stretch(tmp_path):
    """It used to be refused at the first pause."""
    msgs = []
    for e, n in enumerate((15, 20, 12)):
        msgs += sim_ticks(n, success_at=n - 3 if e != 1 else None, t0_ns=(1 + 10 * e) * S, seed=e)  # 10 s apart
    bag = write_bag(tmp_path / "b", [(topic, MSGTYPES[topic], t, raw) for topic, t, raw in msgs])
    (report,) = tools.from_bag([bag], tmp_path / "d", tools._defaults(), log=lambda s: None)
    ds = EpisodeDataset.open(tmp_path / "d")
    assert ds.num_episodes == 3 and [int(n) for n in ds.episode_lengths] == [14, 19, 11]
    assert ds.success.tolist() == [True, False, True]
    assert [c["episode"] for c in report["committed"]] == [0, 1, 2]


def test_a_markerless_bag_split_where_the_arm_rests(tmp_path):
    """Teleoperation as people record it: one bag, joint states at 10 Hz throughout, the arm
    resting 3 s before, between and after the demonstrations (no pause, no marker). --rest cuts
    at each rest: each episode runs from the frame before the arm moves to the frame it stops."""
    from rawmsgs import command, joint_state, poses, reward, success

    msgs, k, q = [], 0, np.zeros(8)
    moves = []  # (first moving tick, last moving tick) per demonstration

    def tick(q, done=False):
        nonlocal k
        t = S + k * 100_000_000
        msgs.extend([("/task/object_poses", t, poses(t, [[k, 0, 0, 1, 0, 0, 0]])), ("/task/reward", t + 1, reward(0.0)),
                     ("/task/success", t + 2, success(done)), ("/joint_states", t + 3, joint_state(t, q)),
                     ("/forward_position_controller/commands", t + 4, command(q))])
        k += 1

    for n in (15, 20, 12):
        for _ in range(30):  # 3 s at rest
            tick(q)
        first = k
        for i in range(n):
            q = q + 0.05
            tick(q, done=i == n - 1)
        moves.append((first, k - 1))
    for _ in range(30):
        tick(q, done=True)
    bag = write_bag(tmp_path / "b", [(topic, MSGTYPES[topic], t, raw) for topic, t, raw in msgs])
    args = tools._defaults()
    (one,) = tools.from_bag([bag], tmp_path / "d0", args, log=lambda s: None)
    assert len(one["committed"]) == 1  # without --rest: one episode, rests included
    args.rest = 2.0
    tools.from_bag([bag], tmp_path / "d", args, log=lambda s: None)
    ds = EpisodeDataset.open(tmp_path / "d")
    assert ds.num_episodes == 3
    for i, (a, b) in enumerate(moves):
        ticks = ds.load_episode(i)["object_poses"][:, 0, 0].astype(int)
        assert ticks[0] == a - 1 and ticks[-1] == b, (i, ticks)  # the rest frame before, the arrival
        assert np.all(np.diff(ticks) == 1)
    assert ds.success.tolist() == [True, True, True]


def test_a_markerless_bag_split_at_a_reset_topic(tmp_path):
    """Episodes back to back, each announced on /sim/episode_start (what mujoco_sim publishes)."""
    from rosbags.typesys.stores import ros2_kilted as T

    from robot_rl.data.bag import serialize

    msgs = []
    for e, n in enumerate((15, 20, 12)):
        t0 = S + e * 3 * S  # 0.5 s or more after the previous episode's end: no pause to split at
        start = serialize(T.std_msgs__msg__Header(stamp=T.builtin_interfaces__msg__Time(sec=t0 // S, nanosec=0),
                                                  frame_id=""), "std_msgs/msg/Header")
        msgs.append(("/sim/episode_start", "std_msgs/msg/Header", t0 - 1, start))
        msgs += [(topic, MSGTYPES[topic], t, raw) for topic, t, raw in sim_ticks(n, success_at=n - 3, t0_ns=t0, seed=e)]
    bag = write_bag(tmp_path / "b", msgs)
    args = tools._defaults()
    args.reset_topic = "/sim/episode_start"
    tools.from_bag([bag], tmp_path / "d", args, log=lambda s: None)
    ds = EpisodeDataset.open(tmp_path / "d")
    assert [int(n) for n in ds.episode_lengths] == [14, 19, 11] and ds.success.tolist() == [True, True, True]
    args.reset_topic = "/nope"
    with pytest.raises(DataError, match="no /nope topic to split episodes at"):
        tools.from_bag([bag], tmp_path / "d2", args, log=lambda s: None)


def test_actions_from_the_trajectory_topic(tmp_path):
    """A steering-style commander: a chunk of 6 points every 4 ticks on the trajectory topic,
    stamped with its observation; frame k's action is the point in force at frame k."""
    from rosbags.typesys.stores import ros2_kilted as T

    from robot_rl.data.bag import serialize

    ticks = [m for m in sim_ticks(24, t0_ns=S) if m[0] != "/forward_position_controller/commands"]
    msgs = [(topic, MSGTYPES[topic], t, raw) for topic, t, raw in ticks]
    for k0 in range(0, 24, 4):
        t0 = S + k0 * 100_000_000
        points = [T.trajectory_msgs__msg__JointTrajectoryPoint(
            positions=np.array([k0 + j + 0.25] + [0.0] * 7), velocities=np.zeros(0), accelerations=np.zeros(0),
            effort=np.zeros(0), time_from_start=T.builtin_interfaces__msg__Duration(sec=0, nanosec=j * 100_000_000))
            for j in range(6)]
        traj = T.trajectory_msgs__msg__JointTrajectory(
            header=T.std_msgs__msg__Header(stamp=T.builtin_interfaces__msg__Time(sec=t0 // S, nanosec=t0 % S), frame_id=""),
            joint_names=list(JOINTS), points=points)
        msgs.append(("/joint_trajectory_controller/joint_trajectory", "trajectory_msgs/msg/JointTrajectory",
                     t0 + 2_000_000, serialize(traj, "trajectory_msgs/msg/JointTrajectory")))
    bag = write_bag(tmp_path / "b", sorted(msgs, key=lambda m: m[2]))
    with pytest.raises(DataError, match="or --actions trajectory"):
        tools.from_bag([bag], tmp_path / "d0", tools._defaults(), log=lambda s: None)
    args = tools._defaults()
    args.actions = "trajectory"
    tools.from_bag([bag], tmp_path / "d", args, log=lambda s: None)
    ep = EpisodeDataset.open(tmp_path / "d").load_episode(0)
    k = ep["joint_pos"][:, 0]
    np.testing.assert_allclose(ep["action"][:, 0], k + 0.25, atol=1e-6)  # point k - k0 of the chunk from k0


def _sim_camera_episode(n=8, size=(96, 96), num_points=256):
    """The simulator's front depth camera over `n` ticks: (messages without the camera, depth
    images, the policy's points, intrinsics, base-from-optical, its quaternion x y z w)."""
    import mujoco
    from rawmsgs import command, joint_state

    from robot_rl.sim.env import ArmEnv

    env = ArmEnv("lift", cameras=("front",), image_size=size, points=True, num_points=num_points)
    obs, _ = env.reset(seed=3)
    pose = env.camera_extrinsics("front")
    wxyz = np.zeros(4)
    mujoco.mju_mat2Quat(wxyz, pose[:3, :3].flatten())
    messages, depth, points = [], [], []
    for k in range(n):
        t = S + k * 100_000_000
        messages.append(("/joint_states", "sensor_msgs/msg/JointState", t,
                         joint_state(t, obs["joint_pos"], obs["joint_vel"])))
        depth.append(obs["front_depth"])
        points.append(obs["points"][:, :3])
        action = obs["joint_pos"] + 0.02
        messages.append(("/forward_position_controller/commands", "std_msgs/msg/Float64MultiArray", t + 1_000_000,
                         command(action)))
        obs, *_ = env.step(action)
    intrinsics = env.camera_intrinsics("front")
    env.close()
    return messages, depth, np.stack(points), intrinsics, pose, [*wxyz[1:], wxyz[0]]


def test_from_bag_makes_the_policys_points_from_a_depth_camera(tmp_path):
    """A depth-only camera (32FC1 depth + CameraInfo, no colour image) and its pose as a parameter:
    from-bag's points are the ones the simulator gives its own policy from the same depth images
    (one robot_rl.perception path), in the base frame; the depth images are not stored."""
    from rawmsgs import camera_info, image

    messages, depth, expected, (fx, fy, cx, cy, w, h), pose, quat = _sim_camera_episode()
    for k, d in enumerate(depth):
        t = S + k * 100_000_000
        messages += [("/camera/front/depth/image_raw", "sensor_msgs/msg/Image", t, image(t, d)),
                     ("/camera/front/camera_info", "sensor_msgs/msg/CameraInfo", t, camera_info(t, fx, fy, cx, cy, w, h))]
    bag = write_bag(tmp_path / "b", sorted(messages, key=lambda m: m[2]))
    out = cli("dataset", "from-bag", bag, "--out", tmp_path / "d", "--points-from-depth", "front", "--num-points", 256,
              "--camera-pose", *pose[:3, 3], *quat, "--success", "false")
    assert out.returncode == 0, out.stderr
    ds = EpisodeDataset.open(tmp_path / "d")
    assert set(ds.keys) == {"joint_pos", "joint_vel", "ee_pos", "ee_quat", "points", "action"}
    ep = ds.load_episode(0)
    n = ds.episode_lengths[0]
    assert n >= 6 and ep["points"].shape == (n, 256, 3)
    assert len(np.unique(ep["points"][0], axis=0)) > 100, "a cloud of the scene, not padding"
    np.testing.assert_allclose(ep["points"], expected[:n], atol=1e-5)
    assert ds.episode_meta(0)["points"]["from"] == "front_depth"


def test_from_bag_resamples_a_drivers_point_clouds_into_the_base_frame(tmp_path):
    """PointCloud2 in the camera's optical frame with a different number of points each frame (a
    driver drops invalid pixels): stored as the policy's fixed-size cloud in the base frame."""
    from rawmsgs import point_cloud

    from robot_rl.perception.depth import PinholeCamera, back_project, depth_in_metres
    from robot_rl.perception.pointcloud import WORKSPACE_MAX, WORKSPACE_MIN

    messages, depth, expected, intrinsics, pose, quat = _sim_camera_episode()
    camera = PinholeCamera(*intrinsics)
    sizes = set()
    for k, d in enumerate(depth):
        t = S + k * 100_000_000
        xyz, _ = back_project(depth_in_metres(d, "32FC1"), camera)
        base = xyz @ pose[:3, :3].T + pose[:3, 3]
        outside = np.flatnonzero(~np.all((base >= WORKSPACE_MIN) & (base <= WORKSPACE_MAX), axis=1))
        xyz = np.delete(xyz, outside[: 500 * k], axis=0)  # fewer points each frame, none the policy sees
        sizes.add(len(xyz))
        messages.append(("/camera/front/points", "sensor_msgs/msg/PointCloud2", t, point_cloud(t, xyz)))
    bag = write_bag(tmp_path / "b", sorted(messages, key=lambda m: m[2]))
    out = cli("dataset", "from-bag", bag, "--out", tmp_path / "d", "--points-topic", "/camera/front/points",
              "--num-points", 256, "--camera-pose", *pose[:3, 3], *quat, "--success", "false")
    assert out.returncode == 0, out.stderr
    ep = EpisodeDataset.open(tmp_path / "d").load_episode(0)
    n = len(ep["points"])
    assert len(sizes) > 1 and n >= 6 and ep["points"].shape == (n, 256, 3)
    np.testing.assert_allclose(ep["points"], expected[:n], atol=1e-5)


def test_view_plots_an_episode_and_plays_each_camera(tmp_path):
    """`dataset view`: a PNG of the low-dim keys and one MP4 per camera key with a frame per step;
    an episode the dataset does not have is one line, exit 2."""
    import imageio.v3 as iio

    from robot_rl.data.collect import collect

    ds = collect("reach", tmp_path / "d", 1, progress=False, cameras=("front",), image_size=(48, 32), depth=True)
    r = cli("dataset", "view", tmp_path / "d", "--episode", 0, "--out", tmp_path / "view")
    assert r.returncode == 0, r.stderr
    length = ds.episode_lengths[0]
    assert (tmp_path / "view" / "episode_0.png").stat().st_size > 0
    for name in ("episode_0_front.mp4", "episode_0_front_depth.mp4"):
        frames = iio.imread(tmp_path / "view" / name, index=None)
        assert frames.shape[:3] == (length, 32, 48), (name, frames.shape)
    rgb = iio.imread(tmp_path / "view" / "episode_0_front.mp4", index=None)
    assert np.abs(rgb.astype(int) - ds.load_episode(0)["front_rgb"].astype(int)).mean() < 12  # lossy H.264
    r = cli("dataset", "view", tmp_path / "d", "--episode", 5, "--out", tmp_path / "view")
    assert r.returncode == 2 and "no episode 5" in r.stderr and len(r.stderr.strip().splitlines()) == 1
