"""A tiny diffusion policy overfits a handful of synthetic episodes through the real trainer."""

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from robot_rl.data.dataset import EpisodeDataset
from robot_rl.errors import ConfigError
from robot_rl.data.windows import ChunkWindows
from robot_rl.policies.diffusion.config import DiffusionConfig
from robot_rl.policies.diffusion.model import DiffusionPolicy
from robot_rl.train.diffusion import DiffusionTrainConfig, train_diffusion

JOINTS = [f"joint{i}" for i in range(1, 8)] + ["finger_joint"]
LENGTH = 20


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # small models: one intra-op thread


@pytest.fixture
def dataset(tmp_path):
    """4 episodes: the arm moves on a straight line from a random start to a random goal;
    the action is the next position. Two observations (position + velocity) fix the future."""
    rng = np.random.default_rng(0)
    ds = EpisodeDataset.create(tmp_path / "demos", {"joint_names": JOINTS, "rate_hz": 10})
    for e in range(4):
        start, goal = rng.uniform(-1, 1, 8), rng.uniform(-1, 1, 8)
        path = start + (goal - start) * np.minimum(np.arange(LENGTH + 1) / (LENGTH - 4), 1.0)[:, None]
        ds.append_episode({"joint_pos": path[:-1].astype(np.float32), "action": path[1:].astype(np.float32)},
                          {"task": "synthetic", "success": True, "seed": e})
    return ds


def replay_evaluator(dataset, tolerance: float = 0.2):
    """Success = the policy's executed actions stay within `tolerance` of the demonstration."""
    def evaluate(policy) -> dict:
        successes = []
        for i in range(dataset.num_episodes):
            ep = dataset.load_episode(i)
            policy.reset(seed=i)
            acts = np.stack([policy.act({"joint_pos": q}) for q in ep["joint_pos"]])
            successes.append(float(np.abs(acts - ep["action"]).max() < tolerance))
        return {"success_rate": float(np.mean(successes))}
    return evaluate


def tiny(**kw) -> DiffusionConfig:
    return DiffusionConfig(**{"obs_keys": ("joint_pos",), "obs_shapes": {"joint_pos": (8,)}, "pred_horizon": 8,
                              "action_horizon": 4, "down_dims": (32, 64), "step_embed_dim": 32, "lr": 3e-3,
                              "lr_warmup_steps": 10, "ema_max_decay": 0.9, **kw})


def test_tiny_policy_overfits_a_handful_of_episodes(dataset, tmp_path):
    """x0 ("sample") prediction makes this toy a regression that fits in ~200 steps; epsilon
    prediction reaches the same chunks only after thousands (next test: its loss falls)."""
    tc = DiffusionTrainConfig(out=str(tmp_path / "run"), num_steps=240, batch_size=32, eval_every=120,
                              log_every=40, eval_windows=64, seed=0, policy=tiny(prediction_type="sample"))
    summary = train_diffusion(tc, dataset, evaluate=replay_evaluator(dataset), progress=False)

    final = summary["final"]
    assert final["train_loss"] < 0.02 * summary["first_loss"]
    assert final["train_action_mse"] < 0.005  # normalized units: RMS error < 0.07 of the half-range
    assert summary["best_success_rate"] == 1.0 and summary["best_step"] in (120, 240)

    run = tmp_path / "run"
    for folder in (run, run / "best", run / "last"):
        assert (folder / "curves.csv").is_file() and (folder / "curves.png").is_file()
    assert (run / "summary.json").is_file()
    header = (run / "curves.csv").read_text().splitlines()[0].split(",")
    assert {"step", "train_loss", "train_action_mse", "success_rate"} <= set(header)
    with open(run / "curves.csv") as f:  # the loss every log_every steps, success at the evaluations
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [40, 80, 120, 160, 200, 240]
    assert [bool(r["success_rate"]) for r in rows] == [False, False, True, False, False, True]
    assert all(float(r["train_loss"]) > 0 for r in rows)

    # The best checkpoint predicts the demonstrated chunks.
    best = DiffusionPolicy.from_checkpoint(run / "best")
    windows = ChunkWindows(dataset, ["joint_pos"], 2, 8)
    for index in [0, 7, 25, 50, 79]:
        obs, action = windows[index]
        chunk = best.predict_chunk({"joint_pos": obs["joint_pos"].numpy()}, torch.Generator().manual_seed(index))
        assert np.abs(chunk - action.numpy()).max() < 0.2  # joint units; the data spans [-1, 1]


def test_training_picks_the_deployment_noise_on_its_evaluations(dataset, tmp_path):
    """The best checkpoint is evaluated at each noise scale x Ta and keeps the best as its default
    (config.json, deployment.json); steering still samples its candidates at noise 1."""
    from robot_rl.policies.steering import SteeredPolicy

    tc = DiffusionTrainConfig(out=str(tmp_path / "run"), num_steps=120, batch_size=32, eval_every=120,
                              eval_windows=32, seed=0, policy=tiny(prediction_type="sample"),
                              deploy_noise_scales=(1.0, 0.0), deploy_action_horizons=(4, 2))
    evaluate = replay_evaluator(dataset, tolerance=0.1)
    summary = train_diffusion(tc, dataset, evaluate=evaluate, progress=False)
    chosen = summary["deployment"]
    record = json.loads((tmp_path / "run" / "best" / "deployment.json").read_text())
    assert record == chosen
    grid = [(r["noise_scale"], r["action_horizon"]) for r in record["grid"]]
    assert grid == [(1.0, 4), (1.0, 2), (0.0, 4), (0.0, 2)]  # the trained settings first
    assert record["grid"][0]["success_rate"] == summary["best_success_rate"]  # measured in training, not again
    assert chosen["success_rate"] == max(r["success_rate"] for r in record["grid"])
    best = DiffusionPolicy.from_checkpoint(tmp_path / "run" / "best")
    assert (best.config.noise_scale, best.config.action_horizon) == (chosen["noise_scale"], chosen["action_horizon"])
    assert evaluate(best)["success_rate"] == chosen["success_rate"]  # the saved defaults reproduce the score

    best.config = dataclasses.replace(best.config, noise_scale=0.0)
    history = best.observe({"joint_pos": np.zeros(8, np.float32)})
    same = best.sample_executable(history, 4, torch.Generator().manual_seed(0))
    assert np.ptp(same, axis=0).max() == 0.0  # noise 0: one chunk four times
    steered = SteeredPolicy(best, None, num_samples=4)
    candidates = best.sample_executable(history, 4, torch.Generator().manual_seed(0), noise_scale=steered.noise_scale)
    assert np.ptp(candidates, axis=0).max() > 1e-3
    with pytest.raises(ConfigError, match="Ta must be in"):
        DiffusionTrainConfig(policy=tiny(), deploy_action_horizons=(9,))


def test_epsilon_prediction_loss_falls_well_below_its_start(dataset, tmp_path):
    tc = DiffusionTrainConfig(out=str(tmp_path / "run"), num_steps=150, batch_size=64, eval_every=50,
                              eval_windows=32, seed=0, policy=tiny())
    summary = train_diffusion(tc, dataset, progress=False)
    assert summary["final"]["train_loss"] < 0.7 * summary["first_loss"]  # mean of the last 50 steps
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()


def save_id(folder) -> str:
    return json.loads((folder / "config.json").read_text())["save_id"]


@pytest.mark.integration
def test_follow_fine_tunes_on_each_newly_committed_episode(dataset, tmp_path):
    """`robot-rl train diffusion --follow` (what the offline_trainer node runs) as a real process."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "robot_rl.cli", "train", "diffusion", "--dataset", str(dataset.root),
           "--out", str(out), "--follow", "--obs-keys", "joint_pos", "--down-dims", "16", "32",
           "--batch-size", "16", "--num-steps", "10", "--eval-every", "10", "--follow-steps", "5",
           "--eval-episodes", "0", "--torch-threads", "1"]
    log = open(tmp_path / "trainer.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def wait(condition, what, timeout=120):
            deadline = time.monotonic() + timeout
            while not condition():
                assert proc.poll() is None, (tmp_path / "trainer.log").read_text()
                assert time.monotonic() < deadline, f"timed out waiting for {what}"
                time.sleep(0.2)

        wait(lambda: "following" in (tmp_path / "trainer.log").read_text(), "the trainer to start following")
        first = save_id(out / "last")
        dataset.append_episode(dataset.load_episode(0), {**dataset.episode_meta(0), "bag": "a new recording"})
        wait(lambda: save_id(out / "last") != first, "a checkpoint after the new episode")
        assert "episodes 4..4 committed" in (tmp_path / "trainer.log").read_text()
        DiffusionPolicy.from_checkpoint(out / "last")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.close()


def test_a_point_cloud_policy_is_evaluated_on_the_depth_camera_it_was_trained_with():
    """The cloud record (cloud.json, or the dataset's episode meta) gives the simulator's depth
    camera the training resolution; an RGB policy's image size comes from its own shapes."""
    from robot_rl.policies.diffusion.config import DiffusionConfig
    from robot_rl.train.diffusion import env_kwargs_for

    points = DiffusionConfig(obs_keys=("joint_pos", "points"), obs_shapes={"joint_pos": (8,), "points": (256, 6)})
    assert env_kwargs_for(points, {"image_size": [128, 128]}) == {
        "points": True, "num_points": 256, "cameras": ("front",), "image_size": (128, 128)}
    assert "image_size" not in env_kwargs_for(points)  # no record: the simulator's default
    rgb = DiffusionConfig(obs_keys=("joint_pos", "front_rgb"), obs_shapes={"joint_pos": (8,), "front_rgb": (48, 64, 3)},
                          crop_shape=(40, 56))
    assert env_kwargs_for(rgb, {"image_size": [128, 128]}) == {"cameras": ("front",), "image_size": (64, 48)}


def test_two_processes_follow_the_loss_curve_of_one_with_the_same_global_batch(tmp_path):
    """`torchrun --nproc_per_node 2 -m robot_rl.cli train diffusion` (gloo on this CPU): each rank
    takes half of every batch of 32 and the gradients are averaged, so the loss curve is the one a
    single process with batch 32 draws."""
    from robot_rl.data.collect import collect

    collect("reach", tmp_path / "demos", 8, progress=False)  # more windows than a batch
    flags = ["train", "diffusion", "--dataset", str(tmp_path / "demos"), "--num-steps", "60", "--batch-size", "32",
             "--log-every", "10", "--eval-every", "60", "--eval-episodes", "0", "--down-dims", "16", "32",
             "--deploy-noise-scales", "--torch-threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "robot_rl.cli", *flags, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, timeout=300, env=env)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "robot_rl.cli", *flags, "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, timeout=300, env=env)
    assert two.returncode == 0, two.stdout[-2000:] + two.stderr[-3000:]

    def curve(run):
        with open(tmp_path / run / "curves.csv") as f:
            return [(int(r["step"]), float(r["train_loss"])) for r in csv.DictReader(f)]

    single, parallel = curve("one"), curve("two")
    assert [s for s, _ in single] == [s for s, _ in parallel] == list(range(10, 61, 10))
    np.testing.assert_allclose([v for _, v in parallel], [v for _, v in single], rtol=1e-4)
    assert single[-1][1] < single[0][1]  # it learned
