"""Online residual learning glue: exact pass-through, transition chains, the learner thread, files."""
import json

import numpy as np
import pytest
import torch

from robot_rl.data.replay import ReplayBuffer
from robot_rl.policies.residual.config import ResidualConfig
from robot_rl.policies.residual.model import ResidualActor, ResidualPolicy, default_normalizer
from robot_rl.policies.residual.online import CHECKPOINT, REPLAY, OnlineResidual
from arms import HOME_QPOS, joint_limits
from ros_helpers import wait_for

SEEDS = [0, 1, 2]
GAMMA = 0.9


def tiny(**kw) -> ResidualConfig:
    """A residual config small enough to update in milliseconds on one thread."""
    base = dict(actor_hidden=16, critic_hidden=16, num_critics=2, batch_size=8, buffer_size=1000,
                n_step=2, gamma=GAMMA, warmup_steps=10**6, exploration_noise=0.0)
    return ResidualConfig(**{**base, **kw})


def wild(actor: ResidualActor, std: float = 10.0) -> ResidualActor:
    """Saturate the correction: a residual that is anything but zero."""
    with torch.no_grad():
        torch.nn.init.normal_(actor.net[-1].weight, std=std, generator=torch.Generator().manual_seed(SEEDS[2]))
    return actor


@pytest.fixture
def online(tmp_path, torch_one_thread):
    made = []

    def make(cfg, actor=None, **kw):
        actor = actor or ResidualActor(2, cfg, default_normalizer(2))
        made.append(OnlineResidual(actor, cfg, tmp_path / "out", control_dt=0.1, seed=SEEDS[0], **kw))
        return made[-1]

    yield make
    for o in made:
        o.close()


def test_a_zero_residual_passes_the_base_through_bit_for_bit():
    cfg = ResidualConfig()
    lo, hi = joint_limits()
    actor = ResidualActor(5, cfg, default_normalizer(5))
    rng = np.random.default_rng(SEEDS[0])
    for base in (HOME_QPOS, lo + (hi - lo) * rng.random(8), lo + (hi - lo) * rng.random(8)):
        out = ResidualPolicy(None, actor, cfg).step(rng.normal(size=5), base)
        assert out.dtype == np.float64
        np.testing.assert_array_equal(out, base)
    out = ResidualPolicy(None, wild(actor), cfg).step(rng.normal(size=5), hi + 1.0)  # clipped to the actor's limits
    assert np.all(out <= hi + 1e-6) and np.all(out >= lo - 1e-6)


def feed(o: OnlineResidual, ticks, success_at=(), rng=None):
    """One control tick per time step in `ticks`: obs = [t, t], executed: the base + half a correction."""
    for t in ticks:
        obs = np.array([t, t], np.float32)
        o.observe(t * 0.1, obs, HOME_QPOS, float(t in success_at), t in success_at)
        o.executed(t * 0.1, obs, HOME_QPOS, HOME_QPOS + 0.5 * np.asarray(ResidualConfig().residual_scale))


def test_transitions_chain_consecutive_ticks_and_end_at_gaps_successes_and_episodes(online, tmp_path):
    o = online(tiny())
    feed(o, [0, 1, 2, 3])
    feed(o, [5, 6, 7, 8, 9], success_at=(7, 8, 9))  # a gap before 5; success at 7: nothing after it
    o.end_episode()
    feed(o, [20, 21])
    checkpoint, replay = o.close()
    buf = ReplayBuffer(100, 2, 8)
    buf.load(replay)
    d = {k: v[: buf.size] for k, v in buf.data.items()}
    # 2-step returns; an episode end bootstraps from the last state, a success does not
    np.testing.assert_allclose(d["obs"][:, 0], [0, 1, 2, 5, 6, 20])
    np.testing.assert_allclose(d["next_obs"][:, 0], [2, 3, 3, 7, 7, 21])
    np.testing.assert_allclose(d["reward"], [0, 0, 0, GAMMA, 1, 0], rtol=1e-6)
    np.testing.assert_allclose(d["discount"], [GAMMA**2, GAMMA**2, GAMMA, 0, 0, GAMMA], rtol=1e-6)
    np.testing.assert_allclose(d["action"], 0.5, rtol=1e-5)  # stored as corrections, in scale units
    assert checkpoint == tmp_path / "out" / CHECKPOINT and replay == tmp_path / "out" / REPLAY
    assert json.loads((checkpoint / "config.json").read_text())["env_steps"] == 6
    ResidualPolicy.from_checkpoint(checkpoint)


def test_the_learner_thread_updates_and_the_snapshot_follows(online, tmp_path):
    logs = []
    cfg = tiny(warmup_steps=5, critic_warmup_updates=0, actor_delay=1, utd_ratio=2)
    o = online(cfg, checkpoint_every=10, log=logs.append)
    rng = np.random.default_rng(SEEDS[1])
    base = HOME_QPOS
    assert np.array_equal(o.act(np.zeros(2, np.float32), base), base)  # zero residual, no noise
    for t in range(40):
        obs = rng.normal(size=2).astype(np.float32)
        o.observe(t * 0.1, obs, base, float(rng.random() < 0.3), False)
        o.executed(t * 0.1, obs, base, base + rng.normal(size=8) * 0.01)
    wait_for(lambda: o.updates >= 30, 60, "30 updates in the learner thread")
    assert any("checkpoint" in line and "updates" in line for line in logs), logs
    assert o.error is None
    assert not np.array_equal(o.act(np.zeros(2, np.float32), base), base)  # the actor moved
    checkpoint, replay = o.close()
    for name, value in o.learner.actor.state_dict().items():  # the snapshot got every update
        torch.testing.assert_close(o.actor.state_dict()[name], value)
    saved = json.loads((checkpoint / "config.json").read_text())
    assert saved["updates"] == o.updates >= 30 and saved["env_steps"] == 39
    loaded = ResidualPolicy.from_checkpoint(checkpoint)
    torch.testing.assert_close(loaded.actor.net[-1].weight, o.learner.actor.net[-1].weight)
    buf = ReplayBuffer(100, 2, 8)
    buf.load(replay)
    assert buf.size == 39


def test_warm_up_explores_around_the_base_without_the_actor(online):
    cfg = tiny(warmup_steps=3)
    o = online(cfg, actor=wild(ResidualActor(2, cfg, default_normalizer(2))))
    obs = np.ones(2, np.float32)
    assert np.array_equal(o.act(obs, HOME_QPOS), HOME_QPOS)  # warm: the actor is not asked
    feed(o, [0, 1, 2, 3])
    assert o.steps == 3
    assert not np.array_equal(o.act(obs, HOME_QPOS), HOME_QPOS)


def test_demos_are_relabelled_with_the_base_into_the_demo_buffer(online, tmp_path):
    from robot_rl.data.collect import collect
    from robot_rl.sim.experts import ScriptedExpert
    from robot_rl.train.residual import label_demos

    dataset = collect("reach", tmp_path / "demos", 2, progress=False)
    cfg = tiny(obs_keys=("joint_pos", "ee_pos", "object_poses"))
    dim = 8 + 3 + 7 * dataset.keys["object_poses"]["shape"][0]
    o = online(cfg, actor=ResidualActor(dim, cfg, default_normalizer(dim)),
               demos=lambda: label_demos(dataset, ScriptedExpert("reach"), cfg.obs_keys))
    wait_for(lambda: o.learner is not None, 60, "the learner to relabel the demos")
    assert 0 < o.learner.demos.size <= int(dataset.episode_lengths.sum())
    assert o.learner.online.size == 0
