"""The diffusion_policy node's core without ROS: the same commands as DiffusionPolicy.act.

The runner (robot_rl/runtime/diffusion_runner.py) gets the simulator's joint states and object
poses as plain arrays (the end-effector pose from forward kinematics), in lock-step (request_lead 0: every Ta-th tick waits for its chunk), and
its guarded commands drive the simulator; the in-process policy, fed the same observations,
must produce the same actions. Bad input (a malformed joint state) and stale input (no joint
state for longer than max_age) produce no command; fresh input resumes.
"""
from __future__ import annotations

import queue

import numpy as np
import pytest

from robot_rl.runtime.diffusion_runner import DiffusionPolicyConfig, DiffusionRunner, Outputs
from robot_rl.runtime.logs import RateLimitedLogger
from arms import JOINT_NAMES
from tiny_policy import POINTS_IMAGE_SIZE, train_tiny


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("diffusion_runner")
    return train_tiny(root, [root / "ckpt"], steps=(100,))[0]


@pytest.fixture(scope="module")
def points_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("diffusion_runner_points")
    return train_tiny(root, [root / "ckpt"], steps=(60,), points=True)[0]


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def make_runner(checkpoint, clock, **overrides):
    commands: queue.Queue = queue.Queue()
    config = DiffusionPolicyConfig(checkpoint=str(checkpoint), noise_scale=0.0, request_lead=0,
                                   max_step=10.0, gripper_max_step=1.0, **overrides)
    runner = DiffusionRunner(config, RateLimitedLogger("diffusion_runner_test"), clock, Outputs(
        command=commands.put, chunk=lambda names, stamp, windows: None, status=lambda status: None,
        loaded=lambda: None))
    runner.install(runner.prepare(str(checkpoint)))
    return runner, commands


def feed(runner, clock, obs, t):
    clock.t = t
    runner.observation("/task/object_poses", t, obs["object_poses"])
    runner.joint_state(JOINT_NAMES, obs["joint_pos"], obs["joint_vel"], t)


def test_lock_step_commands_are_the_policys_actions(checkpoint, torch_one_thread):
    from robot_rl.policies.diffusion.model import DiffusionPolicy
    from robot_rl.policies.loading import with_deployment
    from robot_rl.sim.env import ArmEnv

    clock = Clock()
    runner, commands = make_runner(checkpoint, clock)
    policy = with_deployment(DiffusionPolicy.from_checkpoint(checkpoint), checkpoint, noise_scale=0.0)
    policy.reset(0)
    env = ArmEnv("reach")
    obs, _ = env.reset(seed=2_000_000)
    lo, hi = env.robot.lower, env.robot.upper
    try:
        for k in range(12):
            # the runner computes ee_pos from joint_pos by forward kinematics, as on a real arm
            seen = {**obs, "ee_pos": runner.model.arm.ee_pose(obs["joint_pos"])[0]}
            expected = np.clip(policy.act(seen), lo, hi)
            feed(runner, clock, obs, 0.1 * k)
            command = commands.get(timeout=30.0)  # a request tick waits for its chunk
            np.testing.assert_allclose(command, expected, atol=1e-4, err_msg=f"tick {k}")
            assert commands.empty(), "one command per tick"
            obs, *_ = env.step(command)
        assert runner.status()["chunks"] == 3  # 12 ticks, Ta 4
    finally:
        runner.close()
        env.close()


def test_malformed_and_stale_joint_states_command_nothing(checkpoint, torch_one_thread, caplog):
    from robot_rl.sim.env import ArmEnv

    clock = Clock()
    runner, commands = make_runner(checkpoint, clock, max_age=0.5)
    env = ArmEnv("reach")
    obs, _ = env.reset(seed=2_000_001)
    try:
        feed(runner, clock, obs, 0.0)
        commands.get(timeout=30.0)
        clock.t = 0.1
        runner.joint_state(JOINT_NAMES, obs["joint_pos"][:7], obs["joint_vel"], 0.1)  # 8 names, 7 positions
        runner.joint_state(JOINT_NAMES, np.full(8, np.nan), obs["joint_vel"], 0.1)  # rate-limited: no 2nd line
        assert caplog.text.count("/joint_states: 8 names but 7 positions; ignoring the message") == 1
        assert commands.empty()
        clock.t = 5.0  # no usable joint state for 4.9 s: the watchdog holds
        runner.watchdog()
        assert runner.status()["holding"] and commands.empty()
        feed(runner, clock, obs, 5.0)  # fresh again
        assert np.all(np.isfinite(commands.get(timeout=30.0)))
        assert not runner.status()["holding"]
    finally:
        runner.close()
        env.close()


def optical_pose(env, camera: str) -> tuple[float, ...]:
    """The camera_pose parameter of a simulated camera: x y z qx qy qz qw of its optical frame."""
    import mujoco

    m = env.camera_extrinsics(camera)
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, m[:3, :3].reshape(-1))
    return (*m[:3, 3], q[1], q[2], q[3], q[0])


def test_a_depth_camera_drives_the_policy_like_the_library_rollout(points_checkpoint, torch_one_thread, caplog):
    """points_source depth: the simulator's depth images (32FC1) + CameraInfo + the camera's pose
    give the same clouds, so the same commands, as the library rollout; no /task/object_poses.
    A camera that repeats its last frame (same stamp) or stops: the tick waits, then the node holds.
    The checkpoint records how its clouds were made; a camera of another resolution is told once."""
    import json

    from robot_rl.perception.pointcloud import CLOUD_FILE

    from robot_rl.perception.depth import DepthImage, PinholeCamera
    from robot_rl.policies.diffusion.model import DiffusionPolicy
    from robot_rl.policies.loading import with_deployment
    from robot_rl.sim.env import ArmEnv

    env = ArmEnv("reach", cameras=("front",), image_size=POINTS_IMAGE_SIZE, points=True)
    obs, _ = env.reset(seed=2_000_002)
    clock = Clock()
    runner, commands = make_runner(points_checkpoint, clock, points_source="depth", camera_pose=optical_pose(env, "front"))
    assert set(runner.model.topics) == {"/camera/front/depth/image_raw", "/camera/front/camera_info"}
    policy = with_deployment(DiffusionPolicy.from_checkpoint(points_checkpoint), points_checkpoint, noise_scale=0.0)
    policy.reset(0)
    lo, hi = env.robot.lower, env.robot.upper
    record = json.loads((points_checkpoint / CLOUD_FILE).read_text())
    assert record["from"] == "front_depth" and record["image_size"] == list(POINTS_IMAGE_SIZE)
    assert record["num_points"] == runner.model.policy.config.obs_shapes["points"][0]
    w, h = POINTS_IMAGE_SIZE
    with caplog.at_level("WARNING", logger="diffusion_runner_test"):
        runner.camera_info("/camera/front/camera_info", 0.0, PinholeCamera(50.0, 50.0, w - 0.5, h - 0.5, 2 * w, 2 * h))
    assert f"trained on clouds from {w}x{h}" in caplog.text
    runner.camera_info("/camera/front/camera_info", 0.0, PinholeCamera(*env.camera_intrinsics("front")))
    try:
        for k in range(8):
            seen = {**obs, "ee_pos": runner.model.arm.ee_pose(obs["joint_pos"])[0]}
            expected = np.clip(policy.act(seen), lo, hi)
            clock.t = 0.1 * k
            runner.camera_depth("/camera/front/depth/image_raw", 0.1 * k, DepthImage(obs["front_depth"], "32FC1"))
            runner.joint_state(JOINT_NAMES, obs["joint_pos"], obs["joint_vel"], 0.1 * k)
            command = commands.get(timeout=30.0)
            np.testing.assert_allclose(command, expected, atol=1e-4, err_msg=f"tick {k}")
            obs, *_ = env.step(command)
        for k in range(8, 14):  # the camera repeats its last frame: nothing is answered from it
            clock.t = 0.1 * k
            runner.camera_depth("/camera/front/depth/image_raw", 0.7, DepthImage(obs["front_depth"], "32FC1"))
            runner.joint_state(JOINT_NAMES, obs["joint_pos"], obs["joint_vel"], 0.1 * k)
            runner.watchdog()
        assert commands.empty() and runner.status()["holding"]
    finally:
        runner.close()
        env.close()
