"""The diffusion_policy node as a real process over DDS, driven by the sim or by the test.

A tiny checkpoint (two, for hot reload) is trained here in seconds: a few reach demonstrations
from the scripted expert, a 2-level U-Net, a few hundred AdamW steps through the
DiffusionPolicy API. What it does in the task does not matter here; what the node does with it
does.
"""
from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
from geometry_msgs.msg import PoseArray
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from robot_rl.ros import msgs
from robot_rl.ros.candidates import msg_to_candidates
from arms import JOINT_NAMES, joint_limits
from tiny_policy import TA, train_tiny
from ros_helpers import wait_for

pytestmark = pytest.mark.integration

SIM = "robot_rl.ros.mujoco_sim_node"
POLICY = "robot_rl.ros.diffusion_policy_node"
FORWARD = "/forward_position_controller/commands"
STATUS = "/diffusion_policy/status"
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
LEAD = 1  # the node's request_lead in these tests


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("diffusion_node")
    return train_tiny(root, [root / "ckpt_a", root / "ckpt_b"])


def status(probe) -> dict:
    msg = probe.latest(STATUS)
    return json.loads(msg.data) if msg is not None else {}


def set_checkpoint(probe, path) -> bool:
    value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=str(path))
    request = SetParameters.Request(parameters=[ParameterMsg(name="checkpoint", value=value)])
    return probe.call(SetParameters, "/diffusion_policy/set_parameters", request).results[0].successful


def get_checkpoint(probe) -> str:
    response = probe.call(GetParameters, "/diffusion_policy/get_parameters", GetParameters.Request(names=["checkpoint"]))
    return response.values[0].string_value


def test_policy_drives_the_sim_chunks_candidates_reset_and_hot_reload(nodes, probe, checkpoints, tmp_path):
    """Lock-step sim + node (3 samples per observation): every tick answered with a finite,
    in-limit command; chunks and candidates stamped with observation times; ~/reset; the
    checkpoint swapped by parameter and by topic; bad paths refused, the old model kept."""
    ckpt_a, ckpt_b = checkpoints
    for topic, kind in ((FORWARD, Float64MultiArray), ("/joint_states", JointState),
                        ("/policy/action_chunk", JointTrajectory), ("/policy/candidates", JointTrajectory)):
        probe.subscribe(kind, topic)
    probe.subscribe(String, STATUS, LATCHED)
    nodes.node("sim", SIM, {"task": "reach", "mode": "lockstep", "lockstep_timeout": 1.0})
    nodes.node("policy", POLICY, {"checkpoint": ckpt_a, "num_samples": 3, "request_lead": LEAD,
                                  "use_sim_time": True})
    # lock-step: the sim steps when the policy answers (or after 1 s: observations lost while
    # the nodes discover each other are never answered)
    wait_for(lambda: probe.count("/joint_states") >= 40, 90, "40 lock-step ticks")
    assert status(probe)["checkpoint"] == str(ckpt_a)
    # every observation from the first answered one on gets exactly one command
    first = min(msgs.from_time(m.header.stamp) for m in probe.all("/policy/action_chunk"))
    answered = sum(msgs.from_time(m.header.stamp) >= first - 1e-6 for m in probe.all("/joint_states"))
    assert abs(probe.count(FORWARD) - answered) <= 2, (probe.count(FORWARD), answered)

    lower, upper = joint_limits()
    commands = np.array([msgs.array_from_msg(m) for m in probe.all(FORWARD)])
    assert commands.shape[1] == 8 and np.all(np.isfinite(commands))
    assert np.all(commands >= lower - 1e-9) and np.all(commands <= upper + 1e-9)
    stamps = {round(msgs.from_time(m.header.stamp), 6) for m in probe.all("/joint_states")}
    chunks = {round(msgs.from_time(m.header.stamp), 6): m for m in probe.all("/policy/action_chunk")}
    assert len(chunks) >= 5 and set(chunks) <= stamps, "chunks must carry their observation's stamp"
    chunk_stamps = sorted(chunks)
    assert np.allclose(np.diff(chunk_stamps)[1:], TA * 0.1, atol=1e-6), "a chunk every Ta ticks"
    names, times, positions = msgs.trajectory_from_msg(chunks[chunk_stamps[0]])
    assert names == JOINT_NAMES and positions.shape == (TA + LEAD, 8)
    np.testing.assert_allclose(times, 0.1 * np.arange(TA + LEAD), atol=1e-9)

    candidates = probe.all("/policy/candidates")
    assert len(candidates) >= 5
    # the newest candidates whose chunk the probe has already received (the two topics race)
    matched = [m for m in candidates if round(msgs.from_time(m.header.stamp), 6) in chunks]
    names, stamp, times, sampled = msg_to_candidates(matched[-1])
    assert sampled.shape == (3, TA + LEAD, 8) and np.all(np.isfinite(sampled))
    np.testing.assert_allclose(times, 0.1 * np.arange(TA + LEAD), atol=1e-9)
    executed = msgs.trajectory_from_msg(chunks[round(stamp, 6)])[2]
    np.testing.assert_allclose(sampled[0], executed, atol=1e-9)  # the node executes candidate 0
    assert not np.allclose(sampled[0], sampled[1]), "candidates are independent samples"

    # ~/reset: fresh history; the next chunk comes from the next observation and ticks go on
    resets = status(probe)["resets"]
    response = probe.call(Trigger, "/diffusion_policy/reset")
    assert response.success
    n = probe.count("/joint_states")
    wait_for(lambda: probe.count("/joint_states") > n + 10, 60, "ticks after ~/reset")
    wait_for(lambda: status(probe).get("resets", 0) > resets, 10, "the status to count the reset")
    assert "policy reset: ~/reset" in nodes.log("policy")

    # hot reload by parameter: the status reports the new checkpoint, the ticks go on
    assert set_checkpoint(probe, ckpt_b)
    wait_for(lambda: status(probe).get("checkpoint") == str(ckpt_b), 60, "the status to report checkpoint B")
    n = probe.count(FORWARD)
    wait_for(lambda: probe.count(FORWARD) > n + 10, 60, "commands from checkpoint B")
    assert f"loaded checkpoint {ckpt_b}" in nodes.log("policy")

    # a path that is no checkpoint folder: refused at once, one error, B stays
    assert not set_checkpoint(probe, tmp_path / "no_such_checkpoint")
    # a folder that fails to load: one error, B stays, the parameter goes back to B
    broken = tmp_path / "broken"
    shutil.copytree(ckpt_a, broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    assert set_checkpoint(probe, broken)
    wait_for(lambda: f"checkpoint {broken}:" in nodes.log("policy"), 60, "the load error in the log")
    wait_for(lambda: get_checkpoint(probe) == str(ckpt_b), 30, "the parameter to go back to checkpoint B")
    log = nodes.log("policy")
    assert log.count("no_such_checkpoint") == 1 and log.count(f"checkpoint {broken}:") == 1
    assert f"keeping {ckpt_b}" in log
    assert status(probe)["checkpoint"] == str(ckpt_b)
    n = probe.count(FORWARD)
    wait_for(lambda: probe.count(FORWARD) > n + 10, 60, "commands from checkpoint B after the bad loads")

    # hot reload by topic
    pub = probe.publisher(String, "/diffusion_policy/load_checkpoint")
    pub.publish(String(data=str(ckpt_a)))
    wait_for(lambda: status(probe).get("checkpoint") == str(ckpt_a), 60, "the status to report checkpoint A")
    assert get_checkpoint(probe) == str(ckpt_a)
    commands = np.array([msgs.array_from_msg(m) for m in probe.all(FORWARD)])
    assert np.all(np.isfinite(commands)) and np.all(commands >= lower - 1e-9) and np.all(commands <= upper + 1e-9)


def test_maps_joints_by_name_holds_when_stale_and_resets_when_time_goes_back(nodes, probe, checkpoints):
    """Observations published by the test (joint states in reverse order): the first command is
    within one guard step of the measured joints in joint_names order; poses older than max_age
    -> no new commands and one warning; fresh poses -> commands again; stamps going back -> reset."""
    from robot_rl.sim.env import ArmEnv

    probe.subscribe(Float64MultiArray, FORWARD)
    probe.subscribe(JointTrajectory, "/policy/action_chunk")
    nodes.node("policy", POLICY, {"checkpoint": checkpoints[0], "max_age": 1.0, "request_lead": 0, "noise_scale": 0.5})
    env = ArmEnv("reach")
    obs, _ = env.reset(seed=3)
    env.close()
    order = list(reversed(JOINT_NAMES))
    pub_j = probe.publisher(JointState, "/joint_states", wait_subscribers=60)
    pub_p = probe.publisher(PoseArray, "/task/object_poses", wait_subscribers=60)

    def send(stamp, pose_stamp=None):
        pub_p.publish(msgs.poses_to_msg(obs["object_poses"], stamp if pose_stamp is None else pose_stamp))
        pub_j.publish(msgs.joint_state_to_msg(order, obs["joint_pos"][::-1], obs["joint_vel"][::-1], stamp=stamp))

    time.sleep(1.0)  # matched both ways: a reader that has not matched its writer yet loses the first messages
    stamp = 1.0
    for _ in range(6):
        send(stamp)
        stamp += 0.1
        time.sleep(0.1)
    first = wait_for(lambda: probe.all(FORWARD), 30, "the first command")[0]
    step = np.where(np.array(JOINT_NAMES) == "finger_joint", 0.04, 0.5)
    assert np.all(np.abs(msgs.array_from_msg(first) - obs["joint_pos"]) <= step + 1e-6), \
        "the guard's reference is not the measured joints in joint_names order (mapped by position?)"
    chunk = wait_for(lambda: probe.all("/policy/action_chunk"), 10, "a chunk")[0]
    assert round(msgs.from_time(chunk.header.stamp), 6) == 1.0  # the first observation's stamp
    # the library computes the same chunk from the same observation, seed and noise scale (the
    # node's i-th reset seeds with seed + i; loading the checkpoint was reset 1): the node assembles
    # the observation as the simulator does (ee_pos by forward kinematics agrees to ~1e-4 m)
    from dataclasses import replace

    from robot_rl.policies.diffusion.model import DiffusionPolicy

    policy = DiffusionPolicy.from_checkpoint(checkpoints[0])
    chunks = {}
    for scale in (0.5, 1.0):
        policy.config = replace(policy.config, noise_scale=scale)
        policy.reset(seed=1)
        chunks[scale] = policy.executable(policy.sample_chunks(policy.observe(obs), 1))[0]
    assert np.abs(chunks[0.5] - chunks[1.0]).max() > 0.1  # the check below can tell the scales apart
    np.testing.assert_allclose(msgs.trajectory_from_msg(chunk)[2], chunks[0.5], atol=0.02)

    # poses stop updating: joint states go on (ticks first wait for poses in sync, then the
    # poses are older than max_age) -> hold
    pose_stamp = stamp - 0.1
    for _ in range(8):
        send(stamp, pose_stamp=pose_stamp)
        stamp += 0.1
        time.sleep(0.1)
    time.sleep(0.5)
    held = probe.count(FORWARD)
    for _ in range(6):
        send(stamp, pose_stamp=pose_stamp)
        stamp += 0.1
        time.sleep(0.1)
    time.sleep(0.5)
    assert probe.count(FORWARD) == held, "the node commanded on stale observations"
    log = nodes.log("policy")
    assert log.count("observations are stale") == 1, log

    for _ in range(10):  # fresh again
        send(stamp)
        stamp += 0.1
        time.sleep(0.1)
    wait_for(lambda: probe.count(FORWARD) > held, 20, "commands for fresh observations")
    assert "observations are fresh again" in nodes.log("policy")

    send(0.5)  # the stamps go back (a restarted sim): the policy resets
    wait_for(lambda: "stamps went back" in nodes.log("policy"), 10, "the reset on stamps going back")
    n = probe.count(FORWARD)
    for i in range(3):
        send(0.6 + 0.1 * i)
        time.sleep(0.1)
    wait_for(lambda: probe.count(FORWARD) > n, 20, "commands after the reset")


def test_rgb_policy_reads_camera_images(nodes, probe, tmp_path):
    """A policy on joint_pos + front_rgb (random weights: what it does does not matter) gets
    the sim's camera images: chunks stamped with observation times, finite in-limit commands."""
    from robot_rl.policies.diffusion.config import DiffusionConfig
    from robot_rl.policies.diffusion.model import DiffusionPolicy

    config = DiffusionConfig(obs_keys=("joint_pos", "front_rgb"), obs_shapes={"joint_pos": (8,), "front_rgb": (48, 64, 3)},
                             crop_shape=(40, 56), pred_horizon=8, action_horizon=TA, down_dims=(16, 32), n_groups=4,
                             step_embed_dim=16, num_inference_steps=2, rgb_widths=(16, 32), rgb_blocks_per_stage=1,
                             spatial_softmax_num_kp=8, rgb_feature_dim=16)
    DiffusionPolicy(config).eval().save_checkpoint(tmp_path / "rgb")
    probe.subscribe(Float64MultiArray, FORWARD)
    probe.subscribe(JointState, "/joint_states")
    probe.subscribe(JointTrajectory, "/policy/action_chunk")
    nodes.node("sim", SIM, {"task": "reach", "cameras": ["front"], "image_width": 64, "image_height": 48,
                            "real_time_factor": 2.0})
    nodes.node("policy", POLICY, {"checkpoint": tmp_path / "rgb", "use_sim_time": True})
    wait_for(lambda: probe.count("/policy/action_chunk") >= 3 and probe.count(FORWARD) >= 10, 90,
             "chunks and commands from the RGB policy")
    stamps = {round(msgs.from_time(m.header.stamp), 6) for m in probe.all("/joint_states")}
    assert {round(msgs.from_time(m.header.stamp), 6) for m in probe.all("/policy/action_chunk")} <= stamps
    lower, upper = joint_limits()
    commands = np.array([msgs.array_from_msg(m) for m in probe.all(FORWARD)])
    assert np.all(np.isfinite(commands)) and np.all(commands >= lower - 1e-9) and np.all(commands <= upper + 1e-9)


def test_point_cloud_policy_reads_the_depth_camera_only(nodes, probe, tmp_path):
    """A point-cloud policy (random weights) with points_source depth: the sim's depth images and
    CameraInfo, back-projected with the camera_pose parameter, drive it; it subscribes to neither
    /task/object_poses nor the sim's ready-made /camera/front/points."""
    import mujoco

    from robot_rl.policies.diffusion.config import DiffusionConfig
    from robot_rl.policies.diffusion.model import DiffusionPolicy
    from robot_rl.sim.env import ArmEnv

    config = DiffusionConfig(obs_keys=("joint_pos", "ee_pos", "points"),
                             obs_shapes={"joint_pos": (8,), "ee_pos": (3,), "points": (256, 6)},
                             pred_horizon=8, action_horizon=TA, down_dims=(16, 32), n_groups=4, step_embed_dim=16,
                             num_inference_steps=2, pointnet_dims=(16, 32), points_feature_dim=16)
    DiffusionPolicy(config).eval().save_checkpoint(tmp_path / "points")
    env = ArmEnv("reach", cameras=("front",), image_size=(64, 48))
    env.reset(seed=0)
    pose = env.camera_extrinsics("front")
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, pose[:3, :3].reshape(-1))
    env.close()
    probe.subscribe(Float64MultiArray, FORWARD)
    probe.subscribe(JointTrajectory, "/policy/action_chunk")
    nodes.node("sim", SIM, {"task": "reach", "cameras": ["front"], "depth": True, "image_width": 64,
                            "image_height": 48, "real_time_factor": 2.0})
    nodes.node("policy", POLICY, {"checkpoint": tmp_path / "points", "use_sim_time": True, "points_source": "depth",
                                  "camera_pose": [*pose[:3, 3], quat[1], quat[2], quat[3], quat[0]]})
    wait_for(lambda: probe.count("/policy/action_chunk") >= 3 and probe.count(FORWARD) >= 10, 90,
             "chunks and commands from the point-cloud policy")
    lower, upper = joint_limits()
    commands = np.array([msgs.array_from_msg(m) for m in probe.all(FORWARD)])
    assert np.all(np.isfinite(commands)) and np.all(commands >= lower - 1e-9) and np.all(commands <= upper + 1e-9)
    node = probe.node
    readers = {t: {i.node_name for i in node.get_subscriptions_info_by_topic(t)}
               for t in ("/camera/front/depth/image_raw", "/camera/front/camera_info", "/task/object_poses")}
    assert "diffusion_policy" in readers["/camera/front/depth/image_raw"]
    assert "diffusion_policy" in readers["/camera/front/camera_info"]
    assert "diffusion_policy" not in readers["/task/object_poses"]


@pytest.mark.integration
def test_first_chunk_of_each_episode_comes_from_its_own_first_observation(nodes, probe, checkpoints):
    """/sim/reset between episodes: the node resets on /sim/episode_start, so the chunk that drives
    a new episode is computed from that episode's first observation, never the old episode's."""
    from std_msgs.msg import Header

    probe.subscribe(JointTrajectory, "/policy/action_chunk")
    probe.subscribe(Header, "/sim/episode_start", LATCHED)
    nodes.node("sim", SIM, {"task": "reach", "mode": "lockstep", "lockstep_timeout": 1.0})
    nodes.node("policy", POLICY, {"checkpoint": checkpoints[0], "request_lead": 0, "use_sim_time": True})
    for episode in range(3):
        n = probe.count("/policy/action_chunk")
        wait_for(lambda: probe.count("/policy/action_chunk") >= n + 3, 60, f"chunks in episode {episode}")
        assert probe.call(Trigger, "/sim/reset").success
        wait_for(lambda: probe.count("/sim/episode_start") >= episode + 2, 10, "the episode announcement")
        start = msgs.from_time(probe.all("/sim/episode_start")[-1].stamp)
        wait_for(lambda: any(msgs.from_time(m.header.stamp) >= start - 1e-6
                             for m in probe.all("/policy/action_chunk")), 30, "a chunk of the new episode")
        first = min(msgs.from_time(m.header.stamp) for m in probe.all("/policy/action_chunk")
                    if msgs.from_time(m.header.stamp) >= start - 1e-6)
        assert abs(first - start) < 1e-6, (first, start)
