"""Your own data and environment: arrays with named dimensions (`dataset from-arrays`, .npz and a
Diffusion Policy zarr), LeRobot v3 datasets (`dataset from-lerobot`: our export back, and one from
another arm with AV1 video), and the diffusion and value trainers in a gymnasium env that is not ours."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from lerobot_v3 import ACTION, FPS, MOTORS, write_lerobot_v3

from robot_rl.data.dataset import EpisodeDataset
from robot_rl.data.lerobot import export_lerobot

TEST = Path(__file__).resolve().parent
ENV = {**os.environ, "PYTHONPATH": str(TEST) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "robot_rl.cli", *map(str, args)], env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def point_reach_demos(num_episodes=40):
    """Expert episodes in test/toy_env.py's PointReach (not our arm), in the ReplayBuffer layout."""
    from toy_env import PointReach

    env, data, ends = PointReach(), {"joint_pos": [], "goal": [], "action": [], "success": []}, []
    for seed in range(num_episodes):
        obs, _ = env.reset(seed=seed)
        done = False
        while not done:
            action = obs["goal"] + 0.02  # aim just past the goal: the policy must read it
            data["joint_pos"].append(obs["joint_pos"])
            data["goal"].append(obs["goal"])
            data["action"].append(action)
            obs, _, terminated, truncated, info = env.step(action)
            data["success"].append(info["is_success"])
            done = terminated or truncated
        ends.append(len(data["action"]))
    return {k: np.asarray(v) for k, v in data.items()}, np.asarray(ends)


def test_your_arrays_become_a_dataset_with_named_dimensions(tmp_path):
    arrays, ends = point_reach_demos(6)
    np.savez(tmp_path / "mine.npz", **arrays, episode_ends=ends)
    r = cli("dataset", "from-arrays", tmp_path / "mine.npz", "--out", tmp_path / "d", "--rate-hz", 10,
            "--names", "action=x,y", "goal=gx,gy")
    assert r.returncode == 0, r.stderr
    ds = EpisodeDataset.open(tmp_path / "d")
    assert ds.num_episodes == 6 and "joint_names" not in ds.meta and ds.robot is None
    assert ds.names("action") == ["x", "y"] and ds.names("goal") == ["gx", "gy"] and ds.names("joint_pos") is None
    assert np.array_equal(ds.load_episode(2)["action"], arrays["action"][ends[1]:ends[2]].astype(np.float32))
    assert [ds.episode_meta(i)["source"]["episode"] for i in range(6)] == list(range(6))
    again = cli("dataset", "from-arrays", tmp_path / "mine.npz", "--out", tmp_path / "d", "--rate-hz", 10,
                "--names", "action=x,y", "goal=gx,gy")
    assert again.returncode == 0 and "0 of 6 episodes" in again.stdout and "6 already there" in again.stdout
    assert EpisodeDataset.open(tmp_path / "d").num_episodes == 6

    import zarr  # Diffusion Policy's .zarr: data/<key>, meta/episode_ends (zarr v2, as its ReplayBuffer writes)

    group = zarr.open_group(str(tmp_path / "replay.zarr"), mode="w", zarr_format=2)
    for key, value in arrays.items():
        group.create_array(f"data/{key}", data=value)
    group.create_array("meta/episode_ends", data=ends)
    r = cli("dataset", "from-arrays", tmp_path / "replay.zarr", "--out", tmp_path / "z", "--rate-hz", 10)
    assert r.returncode == 0, r.stderr
    z = EpisodeDataset.open(tmp_path / "z")
    assert z.num_episodes == 6 and np.array_equal(z.load_episode(5)["goal"], ds.load_episode(5)["goal"])

    np.savez(tmp_path / "bad.npz", **arrays)
    for args, words in [((tmp_path / "bad.npz",), "no 'episode_ends' array"),
                        ((tmp_path / "mine.npz", "--names", "action=x,y,z"), "names 3 values"),
                        ((tmp_path / "mine.npz", "--names", "action"), "write KEY=NAME,NAME")]:
        bad = cli("dataset", "from-arrays", *args, "--out", tmp_path / "bad", "--rate-hz", 10)
        assert bad.returncode == 2 and words in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_a_diffusion_policy_and_a_critic_train_and_steer_in_a_gymnasium_env_that_is_not_ours(tmp_path):
    """Arrays from test/toy_env.py's PointReach -> `train diffusion --env` (evaluated in that env) ->
    `train value --env` (its action bounds, no robot) -> `eval --env --value`: nothing patched."""
    arrays, ends = point_reach_demos(40)
    np.savez(tmp_path / "demos.npz", **arrays, episode_ends=ends)
    assert cli("dataset", "from-arrays", tmp_path / "demos.npz", "--out", tmp_path / "d", "--rate-hz", 10,
               "--names", "action=x,y").returncode == 0
    r = cli("train", "diffusion", "--dataset", tmp_path / "d", "--obs-keys", "joint_pos", "goal", "--env", "toy_env:PointReach",
            "--num-steps", 200, "--eval-every", 200, "--eval-episodes", 5, "--batch-size", 64, "--down-dims", 32, 64,
            "--deploy-noise-scales", "--out", tmp_path / "dp", "--torch-threads", 1)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((tmp_path / "dp" / "summary.json").read_text())
    assert summary["best_step"] == 200 and summary["final"]["success_rate"] is not None
    config = json.loads((tmp_path / "dp" / "best" / "config.json").read_text())
    assert config["action_dim"] == 2 and config["joint_names"] == [] and not (tmp_path / "dp" / "best" / "robot.json").exists()
    r = cli("train", "value", "--dataset", tmp_path / "d", "--obs-keys", "joint_pos", "goal", "--env", "toy_env:PointReach",
            "--num-steps", 100, "--eval-every", 50, "--chunk", 4, "--hidden", 32, "--out", tmp_path / "v")
    assert r.returncode == 0, r.stderr[-2000:]
    critic = json.loads((tmp_path / "v" / "checkpoint" / "config.json").read_text())
    assert critic["robot"] == "" and critic["env"] == "toy_env:PointReach" and critic["task_space"] is False
    norm = json.loads((tmp_path / "v" / "checkpoint" / "normalizer.json").read_text())
    assert norm["act_low"] == [-1.0, -1.0] and norm["act_high"] == [1.0, 1.0]  # the env's Box, not an arm's joints
    r = cli("eval", "--env", "toy_env:PointReach", "--policy", tmp_path / "dp" / "best", "--value",
            tmp_path / "v" / "checkpoint", "--num-samples", 4, "--num-episodes", 3)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(r.stdout.splitlines()[-1])["rows"]
    assert [row["variant"] for row in rows] == ["base", "steered N=4 beta=0"]
    bad = cli("train", "diffusion", "--dataset", tmp_path / "d", "--obs-keys", "goal", "success", "--env",
              "toy_env:PointReach", "--out", tmp_path / "bad")
    assert bad.returncode == 2 and "gives no 'success'" in bad.stderr, bad.stderr


def test_our_lerobot_export_reads_back_to_the_same_frames(tmp_path):
    from robot_rl.data.collect import collect

    collect("push", tmp_path / "ours", 2, cameras=("front",), image_size=(32, 24), progress=False)
    export_lerobot(tmp_path / "ours", tmp_path / "lerobot")
    r = cli("dataset", "from-lerobot", tmp_path / "lerobot", "--out", tmp_path / "back")
    assert r.returncode == 0, r.stderr
    ours, back = EpisodeDataset.open(tmp_path / "ours"), EpisodeDataset.open(tmp_path / "back")
    assert back.keys == ours.keys and back.layout() == ours.layout() and back.robot.name == ours.robot.name
    for i in range(ours.num_episodes):
        a, b = ours.load_episode(i), back.load_episode(i)
        for key in a:
            assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), key
        assert back.episode_meta(i)["success"] == ours.episode_meta(i)["success"]
        assert back.episode_meta(i)["task"] == "push"
    again = cli("dataset", "from-lerobot", tmp_path / "lerobot", "--out", tmp_path / "back")
    assert again.returncode == 0 and "0 of 2 LeRobot episodes" in again.stdout
    assert EpisodeDataset.open(tmp_path / "back").num_episodes == 2


def test_a_lerobot_dataset_from_another_arm_with_av1_video(tmp_path):
    """6 motors, a 7-D end-effector action, one AV1 video for all episodes: every frame where its
    timestamp says, names kept, and a diffusion policy trains on it (state + camera -> 7 actions)."""
    truth = write_lerobot_v3(tmp_path / "so100")
    r = cli("dataset", "from-lerobot", tmp_path / "so100", "--out", tmp_path / "d")
    assert r.returncode == 0, r.stderr
    ds = EpisodeDataset.open(tmp_path / "d")
    assert set(ds.keys) == {"state", "action", "top_rgb"} and ds.meta["rate_hz"] == FPS
    assert ds.names("state") == MOTORS and ds.names("action") == ACTION and ds.robot is None
    for i, length in enumerate((12, 9, 14)):
        e, meta = ds.load_episode(i), ds.episode_meta(i)
        assert np.array_equal(e["state"], truth["state"][i]) and np.array_equal(e["action"], truth["action"][i])
        assert e["top_rgb"].shape == (length, 32, 48, 3)
        error = np.abs(e["top_rgb"].astype(int) - truth["images"][i].astype(int)).mean(axis=(1, 2, 3))
        shifted = np.abs(e["top_rgb"][1:].astype(int) - truth["images"][i][:-1].astype(int)).mean(axis=(1, 2, 3))
        assert error.max() < 6 and (error[1:] < shifted).all()  # lossy AV1, but each frame is its own
        assert meta["task"] == "stack the cube" and meta["success"] and "success_assumed" in meta
    r = cli("dataset", "from-lerobot", tmp_path / "so100", "--out", tmp_path / "m", "--map", "observation.state=joint_pos",
            "--image-size", 24, 16)
    assert r.returncode == 0, r.stderr
    m = EpisodeDataset.open(tmp_path / "m")
    assert set(m.keys) == {"joint_pos", "action", "top_rgb"} and m.keys["top_rgb"]["shape"] == [16, 24, 3]
    assert m.names("joint_pos") == MOTORS
    r = cli("train", "diffusion", "--dataset", tmp_path / "m", "--obs-keys", "joint_pos", "top_rgb", "--num-steps", 4,
            "--batch-size", 4, "--eval-episodes", 0, "--eval-every", 4, "--rgb-widths", 16, 16, 16, 16,
            "--out", tmp_path / "dp", "--torch-threads", 1)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / "dp" / "best" / "config.json").read_text())["action_dim"] == 7
    bad = cli("dataset", "from-lerobot", tmp_path / "so100", "--out", tmp_path / "x", "--map", "observation.nope=state")
    assert bad.returncode == 2 and "observation.nope" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    (tmp_path / "so100" / "meta" / "info.json").write_text(json.dumps({"codebase_version": "v2.1", "fps": 10}))
    old = cli("dataset", "from-lerobot", tmp_path / "so100", "--out", tmp_path / "y")
    assert old.returncode == 2 and "v2.1" in old.stderr and "convert" in old.stderr


@pytest.mark.parametrize("meta", [{"rate_hz": 10, "names": {"action": "xy"}}, {"rate_hz": 10, "joint_names": []}])
def test_bad_names_in_dataset_meta_are_refused(tmp_path, meta):
    from robot_rl.errors import DataError

    with pytest.raises(DataError):
        EpisodeDataset.create(tmp_path / "d", meta)
