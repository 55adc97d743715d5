"""The base's chunk context: where its current chunk ends and how much of it is left, the same
from a policy object (trainer, eval), from demonstrations (label_demos) and from a chunk on a topic (node)."""
import dataclasses

import numpy as np

from robot_rl.policies.chunk_context import act_with_context, from_chunk, from_policy
from robot_rl.policies.features import recorded_keys, state_vector
from robot_rl.sim.env import ArmEnv
from robot_rl.sim.experts import ScriptedExpert
from arms import tcp_positions
from test_diffusion_checkpoint import history, make_policy


def test_a_chunk_tells_its_last_executed_action_and_the_share_left():
    chunk = np.arange(12, dtype=np.float32).reshape(4, 3)
    assert [from_chunk(chunk, i)["chunk_left"][0] for i in range(4)] == [0.75, 0.5, 0.25, 0.0]
    np.testing.assert_array_equal(from_chunk(chunk, 1)["chunk_end"], chunk[3])
    # the last `lead` actions only bridge the next inference: the base executes the first 3
    with_lead = from_chunk(chunk, 0, lead=1)
    np.testing.assert_array_equal(with_lead["chunk_end"], chunk[2])
    np.testing.assert_allclose(with_lead["chunk_left"], [2 / 3])
    late = from_chunk(chunk, 3, lead=1)  # the next chunk is late: the bridging action is the end
    assert late["chunk_left"][0] == 0.0
    np.testing.assert_array_equal(late["chunk_end"], chunk[3])


def test_a_diffusion_base_reports_its_queue_and_a_base_without_chunks_is_a_chunk_of_one():
    policy = make_policy()
    policy.config = dataclasses.replace(policy.config, action_horizon=3)
    policy.reset(seed=0)
    obs = {k: v[-1] for k, v in history(policy.config).items()}
    steps = [act_with_context(policy, obs) for _ in range(6)]
    assert [o["chunk_left"][0] for _, o in steps] == [2 / 3, 1 / 3, 0.0] * 2
    for first in (0, 3):  # one chunk's end is its third action, the same at each of its steps
        for action, o in steps[first:first + 3]:
            np.testing.assert_array_equal(o["chunk_end"], steps[first + 2][0])
    assert not np.allclose(steps[2][0], steps[5][0])  # the second chunk is a new one
    policy.reset()
    assert policy.current_chunk is None

    expert = ScriptedExpert("reach")
    obs, _ = ArmEnv("reach").reset(seed=0)
    action, with_context = act_with_context(expert, obs)
    np.testing.assert_array_equal(with_context["chunk_end"], action)
    assert with_context["chunk_left"][0] == 0.0 and "chunk_end" not in obs
    np.testing.assert_array_equal(from_policy(expert, action)["chunk_end"], action)


def test_chunk_end_rel_is_each_object_relative_to_the_tcp_where_the_chunk_ends():
    obs, _ = ArmEnv("push").reset(seed=3)
    end = obs["joint_pos"] + np.r_[0.2, -0.1, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0]
    obs = {**obs, **from_chunk(np.stack([obs["joint_pos"], end]), 0)}
    vec = state_vector(obs, ("chunk_end_rel", "chunk_left"), robot="arm")
    np.testing.assert_allclose(vec[:6], (obs["object_poses"][:, :3] - tcp_positions(end)).ravel(), atol=1e-5)
    assert vec[6] == 0.5
    # a recording holds the observations; the chunk context comes from running the base
    assert recorded_keys(("joint_pos", "chunk_end_rel", "chunk_left")) == ("joint_pos", "object_poses")


def test_labelled_demos_carry_the_base_actions_and_chunk_context_of_each_step(tmp_path):
    from robot_rl.data.collect import collect
    from robot_rl.train.residual import label_demos

    demos = collect("reach", tmp_path / "demos", 1, progress=False)
    policy = make_policy()
    policy.config = dataclasses.replace(policy.config, action_horizon=4)
    keys = ("joint_pos", "object_poses", "chunk_end_rel", "chunk_left")
    (ep,) = label_demos(demos, policy, keys)
    steps = len(ep["action"])
    assert set(ep) == {"joint_pos", "object_poses", "action", "reward", "success", "base", "chunk_end", "chunk_left"}
    np.testing.assert_allclose(ep["chunk_left"][:, 0], [(3 - t % 4) / 4 for t in range(steps)])
    for t in range(steps - steps % 4):  # each step's chunk end is the base action at its chunk's last step
        np.testing.assert_array_equal(ep["chunk_end"][t], ep["base"][t - t % 4 + 3])


def test_the_normaliser_fixes_the_phase_scale_and_standardises_the_rest():
    """chunk_left's standardisation is FIXED_STATS' (the phase enters ~30x larger), wherever it sits."""
    from robot_rl.policies.features import feature_columns
    from robot_rl.policies.residual.config import ResidualConfig
    from robot_rl.policies.residual.model import residual_normalizer

    obs, _ = ArmEnv("push").reset(seed=0)
    obs = {**obs, **from_chunk(np.stack([obs["joint_pos"]] * 3), 1)}
    keys = ("joint_pos", "chunk_left", "chunk_end_rel")
    columns = feature_columns(obs, keys, obs["joint_pos"], "arm")
    assert columns == {"joint_pos": slice(0, 8), "chunk_left": slice(8, 9), "chunk_end_rel": slice(9, 15)}
    states = np.random.default_rng(0).normal(2.0, 3.0, (500, 15))
    norm = residual_normalizer(ResidualConfig(obs_keys=keys), states, columns)
    assert norm.obs_mean[8].item() == 0.5 and abs(norm.obs_std[8].item() - 0.01) < 1e-9
    rest = np.r_[0:8, 9:15]
    np.testing.assert_allclose(norm.obs_std[rest].numpy(), states.std(0)[rest] + 1e-2, rtol=1e-5)
    np.testing.assert_allclose(norm.obs_mean[rest].numpy(), states.mean(0)[rest], rtol=1e-5)
