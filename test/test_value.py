"""Offline value learning: chunk transitions, and Cal-QL / IQL moving Q the known way."""
import numpy as np
import pytest
import torch

from robot_rl.data.chunks import chunk_transitions, step_rewards
from robot_rl.policies.value.config import ValueConfig
from robot_rl.policies.value.model import ValueFunction, ValueNormalizer
from arms import HOME_QPOS
from robot_rl.train.value import ValueLearner

SEEDS = [0, 1]


def test_chunk_transitions_on_a_hand_built_episode():
    state = np.arange(5, dtype=np.float32)[:, None]
    action = np.arange(5, dtype=np.float32)[:, None].repeat(8, 1)
    success = np.array([0, 0, 0, 1, 1], bool)  # success at t=3: steps after it are dropped
    d = chunk_transitions([(state, action, success)], chunk=2, gamma=0.5)
    assert len(d["obs"]) == 4
    np.testing.assert_allclose(d["reward"], [0, 0, 0.5, 1.0])
    np.testing.assert_allclose(d["mc_return"], [0.125, 0.25, 0.5, 1.0])
    np.testing.assert_allclose(d["discount"], [0.25, 0.25, 0.0, 0.0])  # t=1 bootstraps from s_3
    np.testing.assert_allclose(d["next_obs"][:, 0], [2, 3, 3, 3])
    np.testing.assert_allclose(d["chunk"][3, :, 0], [3, 3])  # padded with the last action
    r, end = step_rewards(np.zeros(3, bool), "step_penalty")
    assert end is None and r.tolist() == [-1, -1, -1]


def _toy_data(seed: int, episodes: int = 24, length: int = 8, chunk: int = 2):
    """Successful episodes whose actions all sit near the home posture."""
    rng = np.random.default_rng(seed)
    eps = []
    for _ in range(episodes):
        state = rng.uniform(-1, 1, (length, 3)).astype(np.float32)
        action = (HOME_QPOS + rng.normal(0, 0.01, (length, 8))).astype(np.float32)
        success = np.zeros(length, bool)
        success[-1] = True
        eps.append((state, action, success))
    return {k: torch.from_numpy(v) for k, v in chunk_transitions(eps, chunk, 0.9).items()}


@pytest.mark.parametrize("algo", ["calql", "iql"])
def test_dataset_actions_score_above_random_actions(algo):
    cfg = ValueConfig(algo=algo, chunk=2, hidden=64, batch_size=64, num_steps=0, gamma=0.9, lr=1e-3, task_space=False)
    data = _toy_data(SEEDS[0])
    torch.manual_seed(SEEDS[1])
    learner = ValueLearner(3, cfg, ValueNormalizer(-np.ones(3), np.ones(3)), seed=SEEDS[1])
    rng = np.random.default_rng(SEEDS[1])
    for _ in range(300):
        idx = torch.from_numpy(rng.integers(0, len(data["obs"]), cfg.batch_size))
        learner.update({k: v[idx] for k, v in data.items()})
    diag = learner.diagnostics(data)
    assert diag["val_q_data"] > diag["val_q_random"] + 0.1, diag
    if algo == "calql":  # calibrated: policy-action values are not pushed below the MC return
        o = learner.norm.obs(data["obs"])
        with torch.no_grad():
            pi, _ = learner.actor.sample(o, 1)
            q_pi = learner.critic(o, pi[:, 0]).min(0).values
        assert (q_pi >= data["mc_return"] - 0.15).float().mean() > 0.8, (q_pi - data["mc_return"]).min()


def test_value_function_scores_a_batch_and_round_trips(tmp_path):
    cfg = ValueConfig(chunk=2, hidden=32, obs_keys=("joint_pos",))  # task_space: offsets to one object
    learner = ValueLearner(8, cfg, ValueNormalizer(-np.ones(8) * 3, np.ones(8) * 3, task_offsets=cfg.offset_objects))
    vf = ValueFunction(learner.critic, learner.norm, cfg)
    obs = {"joint_pos": HOME_QPOS.astype(np.float32), "object_poses": np.array([[0.5, 0, 0.05, 1, 0, 0, 0]], np.float32)}
    chunks = np.tile(HOME_QPOS, (5, 4, 1)).astype(np.float32)
    chunks[:, :, 0] += np.linspace(-0.5, 0.5, 5)[:, None]
    scores = vf.score(obs, chunks)
    assert scores.shape == (5,) and np.isfinite(scores).all()
    loaded = ValueFunction.from_checkpoint(vf.save(tmp_path / "ckpt"))
    np.testing.assert_allclose(loaded.score(obs, chunks), scores, rtol=1e-6)


def test_a_critic_on_a_point_cloud_generalist_reads_what_it_sees(tmp_path, capsys):
    """No object poses: `train value --base G --obs-keys joint_pos base_features --no-task-space`
    learns on the generalist's frozen point-cloud features of each recorded frame (the same as
    scene_features of one frame), and steering that generalist scores its candidates with them;
    a blind generalist is refused."""
    import json

    from robot_rl.cli import main
    from robot_rl.data.dataset import EpisodeDataset
    from robot_rl.policies import base_view
    from robot_rl.policies.diffusion.model import DiffusionPolicy
    from robot_rl.policies.steering import SteeredPolicy
    from robot_rl.sim.env import ArmEnv
    from tiny_policy import POINTS_IMAGE_SIZE, train_tiny

    base_dir = train_tiny(tmp_path, [tmp_path / "base"], points=True, steps=(20,))[0]
    base = DiffusionPolicy.from_checkpoint(base_dir)
    ep = EpisodeDataset.open(tmp_path / "demos").load_episode(0)
    batch = base_view.of_episode(base, ep, batch=3)
    assert batch.shape == (len(ep["points"]), 16)
    np.testing.assert_allclose(batch[-1], base.scene_features({"points": ep["points"][-1]}), atol=1e-5)

    out = tmp_path / "value"
    flags = ["train", "value", "--dataset", str(tmp_path / "demos"), "--out", str(out), "--num-steps", "20",
             "--eval-every", "10", "--hidden", "16", "--batch-size", "8", "--chunk", "4", "--no-task-space",
             "--obs-keys", "joint_pos", base_view.KEY]
    assert main(flags) == 2 and "pass --base" in capsys.readouterr().err
    assert main(flags + ["--base", str(base_dir)]) == 0
    value = ValueFunction.from_checkpoint(out / "checkpoint")
    assert value.norm.obs_min.numel() == 8 + 16
    assert json.loads((out / "checkpoint" / "config.json").read_text())["base"] == str(base_dir)

    env = ArmEnv("reach", cameras=("front",), image_size=POINTS_IMAGE_SIZE, points=True)
    obs, _ = env.reset(seed=0)
    steered = SteeredPolicy(base, value, num_samples=4)
    steered.reset(seed=0)
    assert np.isfinite(steered.act(obs)).all() and steered.fallbacks == 0
    assert np.isfinite(value.score({**obs, **base_view.of(base, obs)}, np.zeros((4, 4, 8), np.float32))).all()
    capsys.readouterr()
    assert main(["eval", "--task", "reach", "--policy", "expert:reach", "--value", str(out / "checkpoint"),
                 "--num-episodes", "1"]) == 2
    assert f"reads {base_view.KEY}" in capsys.readouterr().err
