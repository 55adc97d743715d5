"""Residual RL pieces: identity at init, n-step targets, the ensemble's pair-min target, limits."""
import numpy as np
import pytest
import torch

from robot_rl.data.replay import NStepWriter, ReplayBuffer, sample_symmetric
from robot_rl.policies.residual.config import DEFAULT_SCALE, ResidualConfig
from robot_rl.policies.residual.model import ResidualActor, ResidualPolicy, default_normalizer
from robot_rl.policies.residual.config import SPACES
from robot_rl.policies.residual.space import CorrectionSpace, space_for
from arms import HOME_QPOS, joint_limits
from arms import ArmKinematics
from robot_rl.sim.env import ArmEnv
from robot_rl.sim.experts import ScriptedExpert
from robot_rl.train.residual import Learner

SEEDS = [0, 1, 2]


@pytest.mark.parametrize("space", SPACES)
def test_residual_is_exactly_the_base_at_initialisation(space):
    env = ArmEnv("lift")
    cfg = ResidualConfig(residual_space=space)
    base = ScriptedExpert("lift", "medium")
    obs, _ = env.reset(seed=SEEDS[0])
    from robot_rl.policies.features import state_vector
    dim = len(state_vector(obs, cfg.obs_keys)) + space_for(cfg).feature_dim
    policy = ResidualPolicy(base, ResidualActor(dim, cfg, default_normalizer(dim)), cfg)
    reference = ScriptedExpert("lift", "medium")
    policy.reset(seed=SEEDS[1])
    reference.reset(seed=SEEDS[1])
    for _ in range(15):
        expected = reference.act(obs)
        action = policy.act(obs)
        np.testing.assert_array_equal(action, np.clip(expected, *joint_limits()).astype(np.float32))
        obs, *_ = env.step(action)


@pytest.mark.parametrize("space", SPACES)
def test_actions_stay_within_joint_limits(space):
    cfg = ResidualConfig(residual_space=space)
    lo, hi = joint_limits()
    features = space_for(cfg).feature_dim
    actor = ResidualActor(5 + features, cfg, default_normalizer(5 + features))
    torch.nn.init.normal_(actor.net[-1].weight, std=10.0)  # a wild actor: corrections saturate
    policy, kin = ResidualPolicy(None, actor, cfg), ArmKinematics()
    rng = np.random.default_rng(SEEDS[0])
    for base in (lo, hi, (lo + hi) / 2, HOME_QPOS):
        policy.reset()
        for _ in range(10):  # in task space the offset builds up, and must stop at max_offset
            out = policy.step(rng.normal(size=5) * 10, base)
            assert np.all(out >= lo) and np.all(out <= hi)
            assert abs(out[-1] - base[-1]) <= cfg.residual_scale[-1] + 1e-9  # the finger, in both spaces
        if space == "joint":
            assert np.all(np.abs(out - base) <= np.asarray(cfg.residual_scale) + 1e-9)
        elif base is HOME_QPOS:  # away from the limits the whole offset is executed
            moved = kin.fk(out[:7])[0] - kin.fk(base[:7])[0]
            assert np.all(np.abs(moved) <= cfg.max_offset + 0.015)  # first order: ~1 cm off at 8 cm


def test_a_task_space_correction_moves_a_tcp_offset_that_persists():
    """A correction displaces the base target's TCP by scale * (dx, dy, dz), reads back as itself,
    and the offset stays on the next base targets (a zero correction keeps it) until reset."""
    space = CorrectionSpace("task", (0.03, 0.03, 0.03, 0.02), max_offset=0.08)
    kin = ArmKinematics()
    tcp = lambda q: kin.fk(q[:7])[0]  # noqa: E731
    rng = np.random.default_rng(SEEDS[1])
    base = HOME_QPOS + np.concatenate([rng.uniform(-0.3, 0.3, 7), [-0.02]])
    c = rng.uniform(-1, 1, 4)
    out = space.command(base, c)
    np.testing.assert_allclose(tcp(out) - tcp(base), 0.03 * c[:3], atol=2e-3)  # first order: ~mm
    np.testing.assert_allclose(out[7], base[7] + 0.02 * c[3])
    np.testing.assert_allclose(space.follow(base, out), c, atol=0.03)
    np.testing.assert_allclose(space.features(), 0.03 * c[:3] / 0.08, atol=0.01)
    for _ in range(3):  # the next base targets keep the offset
        base = base + np.concatenate([rng.uniform(-0.05, 0.05, 7), [0.0]])
        out = space.command(base, np.zeros(4))
        np.testing.assert_allclose(tcp(out) - tcp(base), 0.03 * c[:3], atol=3e-3)
        np.testing.assert_allclose(space.follow(base, out)[:3], 0.0, atol=0.05)
    space.reset()
    np.testing.assert_array_equal(space.command(HOME_QPOS, np.zeros(4)), HOME_QPOS)
    np.testing.assert_array_equal(space.features(), np.zeros(3))
    leaky = CorrectionSpace("task", (0.03, 0.03, 0.03, 0.02), max_offset=0.08, offset_decay=0.5)
    leaky.follow(HOME_QPOS, leaky.command(HOME_QPOS, [1, 0, 0, 0]))
    leaky.follow(HOME_QPOS, leaky.command(HOME_QPOS, np.zeros(4)))  # no correction: half the offset left
    np.testing.assert_allclose(leaky.offset, [0.015, 0, 0], atol=5e-4)


def _feed(writer, rewards, terminal_at_end):
    for t, r in enumerate(rewards):
        end = t == len(rewards) - 1
        writer.step(np.full(2, t, np.float32), np.zeros(1), np.zeros(1), r, np.full(2, t + 1, np.float32),
                    np.zeros(1), terminal=end and terminal_at_end, episode_end=end)


def test_n_step_targets_on_a_hand_built_trajectory():
    gamma, n = 0.9, 3
    buf = ReplayBuffer(16, 2, 1)
    _feed(NStepWriter(buf, n, gamma), [0.0, 0.0, 0.0, 0.0, 1.0], terminal_at_end=True)
    d = {k: v[: buf.size] for k, v in buf.data.items()}
    assert buf.size == 5
    np.testing.assert_allclose(d["obs"][:, 0], [0, 1, 2, 3, 4])
    # s_t -> s_{t+3}: returns of the sparse reward at t=4, discounts gamma^3 until the terminal.
    np.testing.assert_allclose(d["reward"], [0.0, 0.0, gamma**2, gamma, 1.0], rtol=1e-6)
    np.testing.assert_allclose(d["next_obs"][:, 0], [3, 4, 5, 5, 5])
    np.testing.assert_allclose(d["discount"], [gamma**3, gamma**3, 0, 0, 0], rtol=1e-6)


def test_time_limit_keeps_bootstrapping():
    gamma = 0.5
    buf = ReplayBuffer(8, 2, 1)
    _feed(NStepWriter(buf, 3, gamma), [0.0, 0.0], terminal_at_end=False)
    np.testing.assert_allclose(buf.data["discount"][:2], [gamma**2, gamma], rtol=1e-6)
    np.testing.assert_allclose(buf.data["next_obs"][:2, 0], [2, 2])


def _random_batch(gen, reward_scale: float = 1.0):
    lo, hi = (torch.tensor(x, dtype=torch.float32) for x in joint_limits())
    base = lo + (hi - lo) * torch.rand(16, 8, generator=gen)
    return {"obs": torch.randn(16, 3, generator=gen), "base": base, "action": torch.zeros(16, 8),
            "reward": reward_scale * torch.rand(16, generator=gen), "next_obs": torch.randn(16, 3, generator=gen),
            "next_base": base, "discount": torch.full((16,), 0.9)}


def test_relabelled_demos_end_with_their_rewarded_terminal_step(tmp_path):
    """A demonstration's one reward is its success step: the demo buffer must hold it as a
    terminal row (n-step returns gamma^k before it), or demos teach the critic nothing but bootstrap."""
    from robot_rl.data.collect import collect
    from robot_rl.train.residual import label_demos, relabel_demos

    demos = collect("reach", tmp_path / "demos", 2, seed=SEEDS[1], progress=False)
    cfg = ResidualConfig(n_step=3, gamma=0.9)
    learner = Learner(26, cfg, default_normalizer(26))  # reach: joints, velocities, TCP, the goal pose
    count = relabel_demos(learner, label_demos(demos, ScriptedExpert("reach"), cfg.obs_keys), cfg)
    lengths = [len(demos.load_episode(i)["action"]) for i in range(2)]
    assert demos.success.all() and count == learner.demos.size == sum(lengths)
    d = {k: v[: learner.demos.size] for k, v in learner.demos.data.items()}
    ends = np.cumsum(lengths) - 1
    np.testing.assert_allclose(d["reward"][ends], 1.0)
    np.testing.assert_allclose(d["discount"][ends], 0.0)
    np.testing.assert_allclose(d["reward"][ends - 1], 0.9, rtol=1e-6)  # one step before success
    np.testing.assert_allclose(d["reward"][ends - 2], 0.81, rtol=1e-6)
    np.testing.assert_allclose(d["reward"][ends - 3], 0.0)  # three steps out: bootstrapped
    np.testing.assert_allclose(d["discount"][ends - 3], 0.9**3, rtol=1e-6)


def test_ensemble_target_is_the_min_over_the_sampled_pair():
    cfg = ResidualConfig(num_critics=5, target_noise=0.0, v_min=-100.0, v_max=100.0)  # no clipping here
    learner = Learner(3, cfg, default_normalizer(3), seed=SEEDS[0])
    batch = _random_batch(torch.Generator().manual_seed(SEEDS[1]))
    with torch.no_grad():
        next_correction = learner.actor_target.raw(batch["next_obs"], batch["next_base"])
        q = learner.critic_target(batch["next_obs"], batch["next_base"], next_correction)  # (5, 16)
    for pair in ([0, 3], [4, 1]):
        expected = batch["reward"] + 0.9 * torch.minimum(q[pair[0]], q[pair[1]])
        torch.testing.assert_close(learner.td_target(batch, pair), expected)
    all_min = batch["reward"] + 0.9 * q.min(0).values
    assert not torch.allclose(learner.td_target(batch, [4, 1]), all_min)  # a pair, not all heads


def test_td_targets_stay_in_the_sparse_return_range():
    cfg = ResidualConfig(num_critics=4)
    learner = Learner(3, cfg, default_normalizer(3), seed=SEEDS[0])
    batch = _random_batch(torch.Generator().manual_seed(SEEDS[1]), reward_scale=3.0)  # bootstrap error
    target = learner.td_target(batch, [0, 1])
    assert target.max() == cfg.v_max and target.min() >= cfg.v_min


def test_symmetric_sampling_takes_half_from_each_buffer():
    online, demos = ReplayBuffer(8, 1, 1), ReplayBuffer(8, 1, 1)
    for buf, value in ((online, 1.0), (demos, -1.0)):
        for _ in range(4):
            buf.add(obs=[value], base=[0], action=[0], reward=value, next_obs=[0], next_base=[0], discount=1)
    batch = sample_symmetric(online, demos, 10, np.random.default_rng(SEEDS[0]))
    assert (batch["reward"] == 1).sum() == 5 and (batch["reward"] == -1).sum() == 5
    np.testing.assert_array_equal(batch["demo"].numpy(), (batch["reward"] == -1).numpy())
    only_online = sample_symmetric(online, ReplayBuffer(8, 1, 1), 6, np.random.default_rng(SEEDS[1]))
    assert only_online["demo"].sum() == 0 and (only_online["reward"] == 1).all()


def test_hold_base_makes_the_residual_a_from_scratch_agent():
    """`--base hold`: the base commands the measured joints, so all motion is the residual's."""
    from robot_rl.policies.loading import load_policy

    env = ArmEnv("reach")
    obs, _ = env.reset(seed=SEEDS[0])
    base = load_policy("hold")
    np.testing.assert_array_equal(base.act(obs), obs["joint_pos"].astype(np.float32))
    for _ in range(5):  # an untrained residual on it holds the arm still
        obs2, *_ = env.step(base.act(obs))
    np.testing.assert_allclose(obs2["joint_pos"][:7], obs["joint_pos"][:7], atol=0.02)


def test_train_residual_flags_map_onto_the_config():
    import argparse

    from robot_rl.train import residual_cli

    parser = argparse.ArgumentParser()
    residual_cli.add_arguments(parser)
    default = residual_cli.train_config(parser.parse_args(["--base", "hold", "--task", "lift"])).algo
    assert default == ResidualConfig()
    tc = residual_cli.train_config(parser.parse_args(
        ["--base", "hold", "--task", "push", "--residual-scale", "0.15", "0.04", "--exploration-noise", "0.3",
         "--warmup-steps", "500", "--critic-warmup-updates", "50", "--n-step", "5", "--utd-ratio", "4",
         "--residual-penalty", "0.01", "--target-noise", "0.1", "--noise-clip", "0.3", "--base-action-horizon", "4"]))
    assert tc.task == "push" and tc.base_action_horizon == 4
    assert tc.algo.residual_scale == (0.15,) * 7 + (0.04,)
    assert (tc.algo.exploration_noise, tc.algo.warmup_steps, tc.algo.critic_warmup_updates) == (0.3, 500, 50)
    assert (tc.algo.n_step, tc.algo.utd_ratio, tc.algo.residual_penalty) == (5, 4, 0.01)
    assert (tc.algo.target_noise, tc.algo.noise_clip) == (0.1, 0.3)
    task = residual_cli.train_config(parser.parse_args(["--base", "hold", "--task", "lift", "--residual-space", "task"]))
    assert task.algo.residual_scale == (DEFAULT_SCALE["task"][0],) * 3 + (DEFAULT_SCALE["task"][1],) and task.algo.correction_dim == 4
    task = residual_cli.train_config(parser.parse_args(
        ["--base", "hold", "--task", "lift", "--residual-space", "task", "--residual-scale", "0.05", "0.01",
         "--actor-lr", "1e-5", "--critic-lr", "2e-4", "--gamma", "0.995", "--actor-hidden", "256", "--actor-layers", "3",
         "--critic-hidden", "512", "--critic-layers", "1"]))
    assert task.algo.residual_scale == (0.05,) * 3 + (0.01,)
    assert (task.algo.actor_lr, task.algo.critic_lr, task.algo.gamma) == (1e-5, 2e-4, 0.995)
    assert (task.algo.actor_hidden, task.algo.actor_layers, task.algo.critic_hidden, task.algo.critic_layers) == (256, 3, 512, 1)


def test_exploration_noise_has_its_std_and_is_white_from_step_to_step():
    from robot_rl.policies.residual.noise import ExplorationNoise

    noise = ExplorationNoise(4, np.random.default_rng(SEEDS[0]))
    x = np.array([noise.sample(0.3) for _ in range(20000)])
    assert np.allclose(x.std(0), 0.3, rtol=0.1)
    lag1 = np.mean([np.corrcoef(x[:-1, i], x[1:, i])[0, 1] for i in range(4)])
    assert abs(lag1) < 0.03


def test_trainer_runs_end_to_end_with_demos_and_derived_features(tmp_path):
    """`robot-rl train residual` in miniature: relabelled demos, warm-up, updates, periodic
    evaluation, curves and a checkpoint that loads onto the base and acts within the limits."""
    import json

    from robot_rl.data.collect import collect
    from robot_rl.train.residual import ResidualTrainConfig, train

    demos = collect("reach", tmp_path / "demos", 2, progress=False)
    algo = ResidualConfig(obs_keys=("joint_pos", "ee_pos", "object_poses", "object_rel", "target_rel",
                                    "chunk_end_rel", "chunk_left"),
                          actor_hidden=16, critic_hidden=16, num_critics=2, batch_size=16, warmup_steps=40,
                          critic_warmup_updates=10, bc_weight=0.5)
    tc = ResidualTrainConfig(task="reach", total_env_steps=120, eval_every=60, eval_episodes=2,
                             out=str(tmp_path / "run"), base="expert:reach:medium", base_noise_scale=0.0, algo=algo)
    summary = train(tc, lambda: ScriptedExpert("reach", "medium"), demos, progress=False)
    assert [r["env_steps"] for r in summary["curve"]] == [0, 60, 120]
    assert summary["curve"][-1]["updates"] == 2 * (120 - 40)  # utd_ratio 2 after the warm-up
    for name in ("curves.csv", "curves.png", "summary.json", "checkpoint/model.safetensors", "best/model.safetensors"):
        assert (tmp_path / "run" / name).is_file(), name
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["final_success"] == summary["final_success"]
    trained = summary["curve"][1:]  # best/ is the latest of the trained evaluations with the top success
    top = max(r["success"] for r in trained)
    assert summary["best_env_steps"] == max(r["env_steps"] for r in trained if r["success"] == top)
    assert json.loads((tmp_path / "run" / "best" / "config.json").read_text())["env_steps"] == summary["best_env_steps"]
    policy = ResidualPolicy.from_checkpoint(tmp_path / "run" / "checkpoint", base=ScriptedExpert("reach", "medium"))
    assert policy.cfg.obs_keys[-1] == "chunk_left" and policy.cfg.bc_weight == 0.5
    saved = json.loads((tmp_path / "run" / "checkpoint" / "config.json").read_text())
    # a checkpoint holding the key of a since removed option still loads: unknown keys are dropped
    legacy = tmp_path / "run" / "best" / "config.json"
    legacy.write_text(json.dumps({**json.loads(legacy.read_text()), "removed_option": 0.8}))
    assert ResidualPolicy.from_checkpoint(legacy.parent).cfg == policy.cfg
    assert saved["base"] == "expert:reach:medium" and policy.base_noise_scale == 0.0
    assert saved["base_action_horizon"] is None and policy.base_action_horizon is None  # the base's own Ta
    env = ArmEnv("reach")
    obs, _ = env.reset(seed=SEEDS[0])
    policy.reset(seed=SEEDS[0])
    lo, hi = joint_limits()
    for _ in range(5):
        action = policy.act(obs)
        assert np.all(action >= lo) and np.all(action <= hi)
        obs, *_ = env.step(action)


def test_base_factory_builds_fresh_bases_with_the_requested_noise_scale(tmp_path):
    from robot_rl.errors import ConfigError
    from robot_rl.train.residual_cli import base_factory
    from test_diffusion_checkpoint import make_policy

    make_policy().save_checkpoint(tmp_path / "ckpt")
    make = base_factory(str(tmp_path / "ckpt"), 0.0, 2)
    first, second = make(), make()
    assert first is not second and first.config.noise_scale == second.config.noise_scale == 0.0
    assert first.config.action_horizon == 2
    assert base_factory(str(tmp_path / "ckpt"))().config.noise_scale == 1.0
    with pytest.raises(ConfigError, match="noise_scale"):
        base_factory("expert:lift", 0.0)()


def test_a_residual_on_a_point_cloud_base_reads_what_the_base_sees(tmp_path):
    """No object poses: the residual's state is the joints, the base's chunk and the base's frozen
    point-cloud features (base_view), made the same in training, in the demos' relabelling and in
    deployment; `robot-rl eval --residual` runs it on the base's camera and refuses a blind base."""
    import json

    from robot_rl.cli import main
    from robot_rl.errors import ConfigError
    from robot_rl.policies import base_view
    from robot_rl.policies.diffusion.model import DiffusionPolicy
    from robot_rl.policies.fit import check_residual_observation
    from robot_rl.train.residual import ResidualTrainConfig, train
    from robot_rl.data.dataset import EpisodeDataset
    from tiny_policy import POINTS_IMAGE_SIZE, train_tiny

    base_dir, = train_tiny(tmp_path, [tmp_path / "base"], points=True, steps=(20,))
    base = DiffusionPolicy.from_checkpoint(base_dir)
    env = ArmEnv("reach", cameras=("front",), image_size=POINTS_IMAGE_SIZE, points=True)
    obs, _ = env.reset(seed=0)
    features = base.scene_features(obs)
    assert features.shape == (16,) and np.isfinite(features).all()  # points_feature_dim of the tiny base
    np.testing.assert_array_equal(features, base.scene_features(obs))  # frozen and deterministic
    moved = dict(obs, points=obs["points"] + np.float32(0.05))
    assert not np.allclose(features, base.scene_features(moved))  # it sees the cloud

    keys = ("joint_pos", "joint_vel", base_view.KEY, "chunk_end", "chunk_left")
    algo = ResidualConfig(obs_keys=keys, actor_hidden=16, critic_hidden=16, num_critics=2, batch_size=16,
                          warmup_steps=20, critic_warmup_updates=5, bc_weight=0.5)
    tc = ResidualTrainConfig(task="reach", total_env_steps=40, eval_every=40, eval_episodes=1,
                             out=str(tmp_path / "run"), base=str(base_dir), algo=algo)
    demos = EpisodeDataset.open(tmp_path / "demos")  # the base's own demos: points, no poses read
    summary = train(tc, lambda: DiffusionPolicy.from_checkpoint(base_dir), demos, progress=False)
    assert summary["curve"][-1]["updates"] == 2 * (40 - 20)
    policy = ResidualPolicy.from_checkpoint(tmp_path / "run" / "checkpoint", base=base)
    assert policy.actor.norm.obs_mean.numel() == 8 + 8 + 16 + 8 + 1  # joints, velocities, features, chunk
    obs, _ = env.reset(seed=1)
    policy.reset(seed=1)
    lo, hi = joint_limits()
    for _ in range(3):
        action = policy.act(obs)
        assert np.all(action >= lo) and np.all(action <= hi)
        obs, *_ = env.step(action)
    with pytest.raises(ConfigError, match="base_features"):
        check_residual_observation(policy, ArmEnv("reach").reset(seed=0)[0], "--residual R",
                                   base=ScriptedExpert("reach"))
    out = tmp_path / "eval.json"
    assert main(["eval", "--task", "reach", "--policy", str(base_dir), "--residual", str(tmp_path / "run" / "checkpoint"),
                 "--num-episodes", "1", "--out", str(out)]) == 0
    assert [r["variant"] for r in json.loads(out.read_text())["rows"]] == ["base", "base + residual"]


def test_train_residual_on_a_gymnasium_env_that_is_not_ours(tmp_path):
    """`robot-rl train residual --env module:Class` (test/toy_env.py: dict observation, Box actions,
    info["is_success"]), nothing patched: the action limits and correction scale come from the
    env's action space, the residual trains and evaluates there, and its checkpoint records both."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "robot_rl.cli", "train", "residual", "--env", "toy_env:PointReach",
                        "--base", "hold", "--obs-keys", "joint_pos", "goal", "--total-env-steps", "300",
                        "--eval-every", "150", "--eval-episodes", "3", "--warmup-steps", "100",
                        "--critic-warmup-updates", "20", "--actor-hidden", "32", "--critic-hidden", "32",
                        "--out", str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert [row["env_steps"] for row in summary["curve"]] == [0, 150, 300] and summary["curve"][-1]["updates"] > 0
    saved = json.loads((out / "checkpoint" / "config.json").read_text())
    assert saved["robot"] == "" and saved["env"] == "toy_env:PointReach"
    assert saved["action_low"] == [-1.0, -1.0] and saved["action_high"] == [1.0, 1.0]
    assert saved["residual_scale"] == pytest.approx([0.05, 0.05])  # 5 % of the half-range
    assert not (out / "checkpoint" / "robot.json").exists()
    from robot_rl.policies.hold import HoldPosition
    from toy_env import PointReach

    policy = ResidualPolicy.from_checkpoint(out / "checkpoint", base=HoldPosition())
    toy = PointReach()
    obs, _ = toy.reset(seed=0)
    policy.reset(seed=0)
    action = policy.act(obs)
    assert action.shape == (2,) and np.all(np.abs(action - obs["joint_pos"]) <= 0.05 + 1e-6)
    scored = subprocess.run([sys.executable, "-m", "robot_rl.cli", "eval", "--env", "toy_env:PointReach", "--policy", "hold",
                             "--residual", str(out / "checkpoint"), "--num-episodes", "3"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert scored.returncode == 0, scored.stderr[-2000:]
    rows = json.loads(scored.stdout.splitlines()[-1])["rows"]
    assert [row["variant"] for row in rows] == ["base", "base + residual"]
    bad = subprocess.run([sys.executable, "-m", "robot_rl.cli", "train", "residual", "--env", "toy_env:Nope",
                          "--base", "hold", "--out", str(tmp_path / "bad")], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "--env toy_env:Nope: cannot make it" in bad.stderr
