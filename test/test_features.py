"""State vectors of the RL critics: derived features agree with the simulator, batches with rows."""
import numpy as np
import pytest

from robot_rl.policies.features import source_keys, state_matrix, state_vector
from robot_rl.sim.env import ArmEnv
from arms import ArmKinematics

KEYS = ("joint_pos", "object_rel", "target_rel")


def test_derived_features_are_positions_relative_to_the_tcp_and_the_base_target():
    env = ArmEnv("push")
    obs, _ = env.reset(seed=3)
    target = obs["joint_pos"] + np.r_[0.1, -0.1, 0.05, 0.0, 0.0, 0.0, 0.0, 0.0]
    vec = state_vector(obs, KEYS, target, "arm")
    objects = obs["object_poses"][:, :3]  # cube and goal
    tcp_of_target = ArmKinematics().fk(target[:7])[0]
    np.testing.assert_allclose(vec[:8], obs["joint_pos"])
    np.testing.assert_allclose(vec[8:14], (objects - obs["ee_pos"]).ravel(), atol=1e-6)
    np.testing.assert_allclose(vec[14:], (objects - tcp_of_target).ravel(), atol=1e-5)
    # the target differs from the current posture, so the two features differ too
    assert np.abs(vec[8:14] - vec[14:]).max() > 0.01


def test_a_batch_is_its_rows_and_datasets_need_only_observation_keys():
    env = ArmEnv("lift")
    rows, bases = [], []
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        rows.append(obs)
        bases.append(obs["joint_pos"] + 0.05 * seed)
    batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    expected = np.stack([state_vector(r, KEYS, b, "arm") for r, b in zip(rows, bases)])
    np.testing.assert_allclose(state_matrix(batch, KEYS, np.stack(bases), "arm"), expected, atol=1e-6)
    assert source_keys(KEYS) == ("joint_pos", "object_poses", "ee_pos")


def test_target_rel_without_a_base_action_says_so():
    obs, _ = ArmEnv("lift").reset(seed=0)
    with pytest.raises(ValueError, match="base action"):
        state_vector(obs, ("target_rel",))
