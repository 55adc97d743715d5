"""The simulated arm and tasks: real MuJoCo stepping, seeded determinism, commands and limits."""
import numpy as np
import pytest

from arms import HOME_QPOS, JOINT_NAMES, joint_limits
from robot_rl.sim.env import ArmEnv
from robot_rl.sim.experts import ScriptedExpert
from robot_rl.sim.rollout import run_episode

SEEDS = [0, 1, 2]


@pytest.mark.parametrize("task", ["reach", "push", "lift"])
def test_reset_is_seeded_and_randomised(task):
    env = ArmEnv(task)
    a, _ = env.reset(seed=SEEDS[0])
    b, _ = env.reset(seed=SEEDS[0])
    c, _ = env.reset(seed=SEEDS[1])
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.allclose(a["object_poses"], c["object_poses"])
    assert a["object_poses"].shape == (len(env.object_names), 7)


@pytest.mark.parametrize("task", ["push", "lift"])
def test_two_runs_with_the_same_seed_are_identical(task):
    runs = [run_episode(ArmEnv(task), ScriptedExpert(task, "medium"), seed=7, record=True) for _ in range(2)]
    assert runs[0].steps == runs[1].steps
    for key, value in runs[0].frames.items():
        np.testing.assert_array_equal(value, runs[1].frames[key], err_msg=key)


def test_command_moves_the_arm_and_is_clipped_to_limits():
    env = ArmEnv("reach")
    obs, _ = env.reset(seed=0)
    target = obs["joint_pos"].copy()
    target[0] += 0.3
    for _ in range(10):
        obs, *_ = env.step(target)
    assert abs(obs["joint_pos"][0] - target[0]) < 0.01
    lower, upper = joint_limits()
    beyond = upper + 1.0
    env.apply_command(beyond)
    assert np.all(env.data.ctrl[env._act] <= upper + 1e-9)


def test_gripper_closes_and_opens():
    env = ArmEnv("reach")
    obs, _ = env.reset(seed=0)
    closed = obs["joint_pos"].copy()
    closed[-1] = 0.0
    for _ in range(5):
        obs, *_ = env.step(closed)
    assert obs["joint_pos"][-1] < 0.002
    assert list(env.joint_names) == list(JOINT_NAMES) and len(HOME_QPOS) == 8


def test_cameras_depth_and_points():
    env = ArmEnv("lift", cameras=("front", "wrist"), image_size=(64, 48), points=True, num_points=256)
    obs, _ = env.reset(seed=0)
    assert obs["front_rgb"].shape == (48, 64, 3) and obs["front_rgb"].dtype == np.uint8
    assert obs["wrist_rgb"].std() > 1.0  # not a blank image
    assert obs["front_depth"].shape == (48, 64)
    pts = obs["points"]
    assert pts.shape == (256, 6) and np.isfinite(pts).all()
    assert pts[:, 2].min() > 0.0  # cropped above the table top
    cube = obs["object_poses"][0, :3]
    assert np.min(np.linalg.norm(pts[:, :3] - cube, axis=1)) < 0.03  # the cube (2 cm half-size) is in the cloud
    fx, fy, cx, cy, w, h = env.camera_intrinsics("front")
    assert (w, h) == (64, 48) and fx == fy and (cx, cy) == (31.5, 23.5)
    env.close()



@pytest.mark.parametrize("task", ["push", "reach"])
def test_the_goal_marker_is_seen_by_the_cameras(task):
    """A camera-based policy must see where to go: the goal marker is in the RGB image and in the
    point cloud above the table crop (the URDF compiler once dropped it as a visual-only geom)."""
    env = ArmEnv(task, cameras=("front",), image_size=(128, 128), points=True)
    for seed in (0, 1, 2):
        obs, _ = env.reset(seed=seed)
        goal = obs["object_poses"][-1, :3]
        near = np.linalg.norm(obs["points"][:, :3] - goal, axis=1) < 0.05
        assert near.sum() >= 20, f"seed {seed}: {near.sum()} of the cloud's points on the goal"
        rgb = obs["front_rgb"].astype(int)
        green = (rgb[..., 1] > rgb[..., 0] + 60) & (rgb[..., 1] > rgb[..., 2] + 60)
        assert green.sum() >= 10, f"seed {seed}: {green.sum()} green pixels"
    env.close()
