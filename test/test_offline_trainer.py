"""offline_trainer node: runs a following trainer as a child process and publishes each new
checkpoint path; the trainer sees episodes committed after it started."""
from __future__ import annotations

import signal
from pathlib import Path

import pytest
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from robot_rl.data.dataset import EpisodeDataset
from robot_rl.ros.offline_trainer_node import OfflineTrainerConfig, checkpoint_id
from ros_helpers import wait_for
from test_dataset_tools import make_dataset

pytestmark = pytest.mark.integration
HERE = Path(__file__).resolve().parent


def test_checkpoint_paths_follow_committed_episodes(nodes, probe, tmp_path):
    ds = make_dataset(tmp_path / "d", 1)
    out = tmp_path / "run"
    probe.subscribe(String, "/policy/checkpoint",
                    QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                               durability=DurabilityPolicy.TRANSIENT_LOCAL))
    nodes.node("trainer", "robot_rl.ros.offline_trainer_node", {
        "dataset": tmp_path / "d", "out_dir": out, "poll_s": 0.1,
        "trainer_command": ["$python", str(HERE / "follow_trainer.py"), "$dataset", "$out_dir"]})
    wait_for(lambda: "following" in nodes.log("trainer"), 60, "the trainer to start following")
    assert "from episode 1" in nodes.log("trainer")  # the episode already there is not new
    for n in (1, 2):
        ds.append_episode(ds.load_episode(0), {**ds.episode_meta(0), "bag": f"recording {n}"})  # a new episode
        wait_for(lambda: probe.count("/policy/checkpoint") >= n, 30, f"checkpoint {n} on /policy/checkpoint")
        assert probe.latest("/policy/checkpoint").data == str((out / "best").resolve())
    assert f"checkpoint after episode 2 ({2 * ds.episode_lengths[0]} frames)" in nodes.log("trainer")
    assert nodes.stop("trainer", signal.SIGINT, timeout=30) == 0


def test_checkpoint_id_needs_all_three_files_to_agree(tmp_path):
    assert checkpoint_id(tmp_path) is None
    (tmp_path / "config.json").write_text('{"save_id": "a"}')
    (tmp_path / "normalizer.json").write_text('{"save_id": "a"}')
    from safetensors.numpy import save_file
    import numpy as np

    save_file({"w": np.zeros(1, np.float32)}, str(tmp_path / "model.safetensors"), metadata={"save_id": "b"})
    assert checkpoint_id(tmp_path) is None
    save_file({"w": np.zeros(1, np.float32)}, str(tmp_path / "model.safetensors"), metadata={"save_id": "a"})
    assert checkpoint_id(tmp_path) == "a"
    cmd = OfflineTrainerConfig(dataset="d", out_dir="o", trainer_args=("--obs", "state")).command()
    assert cmd[1:] == ["-m", "robot_rl.cli", "train", "diffusion", "--dataset", "d", "--out", "o", "--follow",
                       "--obs", "state"]
    assert EpisodeDataset  # imported for make_dataset's type
