"""The nodes as real processes talking DDS on loopback (this session's ROS_DOMAIN_ID).

Each test starts what it needs and kills the process groups at teardown (fixture `nodes`).
"""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from geometry_msgs.msg import PoseArray
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from robot_rl.ros import msgs
from arms import JOINT_NAMES
from ros_helpers import wait_for

pytestmark = pytest.mark.integration

SIM = "robot_rl.ros.mujoco_sim_node"
EXPERT = "robot_rl.ros.scripted_expert_node"
FORWARD = "/forward_position_controller/commands"
TRAJECTORY = "/joint_trajectory_controller/joint_trajectory"


def joints(probe) -> tuple[float, np.ndarray]:
    msg = probe.latest("/joint_states")
    names, q, _, _ = msgs.joint_state_from_msg(msg)
    return msgs.from_time(msg.header.stamp), msgs.reorder(names, q, JOINT_NAMES)


def start_sim(nodes, probe, **params):
    probe.subscribe(JointState, "/joint_states")
    nodes.node("sim", SIM, {"task": "reach", **params})
    wait_for(lambda: probe.count("/joint_states") > 0, 90, "the first /joint_states from mujoco_sim")


def test_command_round_trip_and_sigterm(nodes, probe):
    """A forward command moves the joints toward it; SIGTERM ends the sim cleanly."""
    start_sim(nodes, probe, real_time_factor=2.0)
    _, q0 = joints(probe)
    target = q0.copy()
    target[0] += 0.3  # joint1
    target[3] += 0.2  # joint4
    pub = probe.publisher(Float64MultiArray, FORWARD)
    pub.publish(msgs.array_to_msg(target))
    wait_for(lambda: np.all(np.abs(joints(probe)[1][[0, 3]] - target[[0, 3]]) < 0.02), 15,
             f"joint1 and joint4 to reach {target[[0, 3]]}")
    assert nodes.stop("sim", signal.SIGTERM, timeout=10) == 0


def test_refuses_nan_and_wrong_length(nodes, probe):
    """Bad commands are refused with one logged error each; the arm holds the last safe command."""
    start_sim(nodes, probe, real_time_factor=2.0)
    _, q0 = joints(probe)
    good = q0.copy()
    good[1] += 0.2
    pub = probe.publisher(Float64MultiArray, FORWARD)
    pub.publish(msgs.array_to_msg(good))
    wait_for(lambda: abs(joints(probe)[1][1] - good[1]) < 0.02, 15, "joint2 to reach the good command")
    nan = good.copy()
    nan[1] = np.nan
    pub.publish(msgs.array_to_msg(nan))
    pub.publish(msgs.array_to_msg(good[:7] + 0.3))  # 7 values for 8 joints
    wait_for(lambda: "7 values for 8 joints" in nodes.log("sim"), 10, "the wrong-length refusal in the log")
    t_bad, _ = joints(probe)
    wait_for(lambda: joints(probe)[0] > t_bad + 0.5, 10, "half a second of sim time after the bad commands")
    np.testing.assert_allclose(joints(probe)[1][:7], good[:7], atol=0.02)
    log = nodes.log("sim")
    assert log.count("command refused") == 2, log
    assert "non-finite values for ['joint2']" in log


def test_trajectory_by_name(nodes, probe):
    """A JointTrajectory in another joint order is executed by time_from_start, mapped by name."""
    start_sim(nodes, probe, real_time_factor=2.0)
    _, q0 = joints(probe)
    names = ["finger_joint", "joint6", "joint2"]  # a subset, in a different order
    goal = np.array([0.01, q0[5] - 0.3, q0[1] + 0.25])
    times = [0.5, 1.0]
    positions = [(goal + np.array([q0[7], q0[5], q0[1]])) / 2, goal]
    pub = probe.publisher(JointTrajectory, TRAJECTORY)
    pub.publish(msgs.trajectory_to_msg(names, times, positions))
    wait_for(lambda: np.all(np.abs(joints(probe)[1][[7, 5, 1]] - goal) < 0.02), 15,
             f"{names} to reach {goal}")
    np.testing.assert_allclose(joints(probe)[1][[0, 2, 3, 4, 6]], q0[[0, 2, 3, 4, 6]], atol=0.03)


def test_reset_service_uses_successive_seeds(nodes, probe):
    """/sim/reset answers with seed, seed+1, ...; the same seed gives the same start."""
    probe.subscribe(PoseArray, "/task/object_poses")
    start_sim(nodes, probe, seed=7, real_time_factor=2.0)
    wait_for(lambda: probe.count("/task/object_poses") > 0, 10, "object poses")
    start_goal = msgs.poses_from_msg(probe.all("/task/object_poses")[0])
    answers, goals = [], []
    for _ in range(2):
        r = probe.call(Trigger, "/sim/reset")
        assert r.success
        answers.append(r.message)
        t_reset = float(re.search(r"time (\S+)", r.message).group(1))
        first = wait_for(lambda: next((m for m in probe.all("/task/object_poses")
                                       if abs(msgs.from_time(m.header.stamp) - t_reset) < 1e-6), None),
                         10, "the poses published at the reset")
        goals.append(msgs.poses_from_msg(first))
    assert "seed 7" in answers[0] and "seed 8" in answers[1], answers
    np.testing.assert_allclose(goals[0], start_goal, atol=1e-6)  # startup and first reset: seed 7
    assert not np.allclose(goals[1], goals[0])


def test_lockstep_steps_once_per_command(nodes, probe):
    """In lock-step mode the sim waits for each tick's command (here: up to 30 s)."""
    probe.subscribe(Clock, "/clock")
    start_sim(nodes, probe, mode="lockstep", lockstep_timeout=30.0)
    pub = probe.publisher(Float64MultiArray, FORWARD)
    t0, q0 = joints(probe)
    n0 = probe.count("/joint_states")
    time.sleep(1.0)
    assert probe.count("/joint_states") == n0, "the sim stepped without a command"
    stamps = []
    for i in range(5):
        pub.publish(msgs.array_to_msg(q0))
        wait_for(lambda: probe.count("/joint_states") > n0 + i, 10, f"tick {i + 1}")
        stamps.append(joints(probe)[0])
    np.testing.assert_allclose(np.diff([t0] + stamps), 0.1, atol=1e-6)
    clock = msgs.from_time(probe.latest("/clock").clock)
    assert abs(clock - stamps[-1]) < 1e-6
    # After a reset two observations are unanswered (the last one of the old episode and the
    # reset's): the first command is a late answer and must not step; the second one steps.
    assert probe.call(Trigger, "/sim/reset").success
    n1 = wait_for(lambda: probe.count("/joint_states") > n0 + 5 and probe.count("/joint_states"), 10,
                  "the reset's observation")
    pub.publish(msgs.array_to_msg(q0))
    time.sleep(1.0)
    assert probe.count("/joint_states") == n1, "a late answer stepped the sim"
    pub.publish(msgs.array_to_msg(q0))
    wait_for(lambda: probe.count("/joint_states") == n1 + 1, 10, "the tick after the reset")


def test_lockstep_timeout_holds_and_steps(nodes, probe):
    """With no commander, lock-step still advances every lockstep_timeout, holding position."""
    start_sim(nodes, probe, mode="lockstep", lockstep_timeout=0.2)
    wait_for(lambda: probe.count("/joint_states") >= 5, 10, "ticks driven by the lock-step timeout")


def test_expert_episodes_through_bringup(nodes, tmp_path):
    """`robot-rl bringup` + `robot-rl episodes`: the expert solves reach through the topics."""
    bringup = nodes.start("bringup", [sys.executable, "-m", "robot_rl.cli", "bringup", "sim_expert",
                                      "-p", "mode=lockstep", "-p", "task=reach", "-p", "seed=100",
                                      "-p", "cameras=[front]"])
    video = tmp_path / "reach.mp4"
    result = subprocess.run([sys.executable, "-m", "robot_rl.cli", "episodes", "--task", "reach",
                             "--num-episodes", "3", "--max-steps", "80", "--video", str(video)],
                            capture_output=True, text=True, timeout=120)
    print(result.stdout, result.stderr)
    assert result.returncode == 0
    assert "3/3 episodes succeeded" in result.stdout
    assert video.stat().st_size > 1000
    import imageio.v2 as imageio

    frames = imageio.mimread(video)
    assert len(frames) >= 5 and frames[0].shape == (96, 96, 3)
    assert nodes.stop("bringup", signal.SIGINT, timeout=15) == 0
    assert bringup.returncode == 0


def test_episodes_reports_missing_graph_in_one_line():
    """No sim running: one error line and exit code 2, not a traceback."""
    result = subprocess.run([sys.executable, "-m", "robot_rl.cli", "episodes", "--task", "reach",
                             "--num-episodes", "1", "--service-timeout", "1",
                             "--reset-service", "/no_such_sim/reset"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: service /no_such_sim/reset not available")
    assert len(result.stderr.strip().splitlines()) == 1


def test_cameras_depth_and_points(nodes, probe):
    """Enabled by parameters: rgb8 + 32FC1 images, CameraInfo and an xyz+rgb cloud."""
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    topics = {"/camera/front/image_raw": Image, "/camera/front/depth/image_raw": Image,
              "/camera/front/camera_info": CameraInfo, "/camera/front/points": PointCloud2}
    for topic, kind in topics.items():
        probe.subscribe(kind, topic, qos_profile_sensor_data)
    start_sim(nodes, probe, cameras=["front"], depth=True, points=True, num_points=256,
              image_width=64, image_height=48, real_time_factor=2.0)
    for topic in topics:
        wait_for(lambda: probe.count(topic) > 0, 20, topic)
    rgb = msgs.image_from_msg(probe.latest("/camera/front/image_raw"))
    depth = msgs.image_from_msg(probe.latest("/camera/front/depth/image_raw"))
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8 and rgb.std() > 0
    assert depth.shape == (48, 64) and depth.dtype == np.float32 and 0.1 < np.median(depth) < 5.0
    fx, fy, cx, cy, w, h = msgs.camera_info_from_msg(probe.latest("/camera/front/camera_info"))
    assert (w, h, cx, cy) == (64, 48, 31.5, 23.5) and fx > 0
    points = msgs.points_from_msg(probe.latest("/camera/front/points"))
    assert points.shape == (256, 6) and np.all(np.isfinite(points))


def test_bringup_exits_when_a_node_dies(nodes):
    """A node that fails (bad parameter: one error line, exit 2) takes the whole graph down."""
    p = nodes.start("bringup", [sys.executable, "-m", "robot_rl.cli", "bringup", "sim_expert",
                                "-p", "mode=bogus"])
    assert p.wait(60) != 0
    log = nodes.log("bringup")
    assert "error: node mujoco_sim: mode must be one of ('realtime', 'lockstep'), got 'bogus'" in log
    assert "mujoco_sim exited with code 2; stopping the graph" in log


def test_expert_maps_joints_by_name_and_holds_when_stale(nodes, probe):
    """The expert answers one command per (joint states, poses) pair, in `joint_names` order."""
    from robot_rl.sim.env import ArmEnv
    from robot_rl.sim.experts import ScriptedExpert

    probe.subscribe(Float64MultiArray, FORWARD)
    order = list(reversed(JOINT_NAMES))
    nodes.node("expert", EXPERT, {"task": "reach", "joint_names": order, "max_age": 0.5})
    pub_j = probe.publisher(JointState, "/joint_states")
    pub_p = probe.publisher(PoseArray, "/task/object_poses")
    env = ArmEnv("reach")
    obs, _ = env.reset(seed=3)
    expected = ScriptedExpert("reach").act(obs)

    def send(stamp, joints=True, poses=True):
        if poses:
            pub_p.publish(msgs.poses_to_msg(obs["object_poses"], stamp))
        if joints:  # published in reverse order: the node must map by name
            pub_j.publish(msgs.joint_state_to_msg(order, obs["joint_pos"][::-1], obs["joint_vel"][::-1], stamp=stamp))

    send(1.0)
    cmd = wait_for(lambda: probe.latest(FORWARD), 15, "the expert's command")
    np.testing.assert_allclose(msgs.array_from_msg(cmd)[::-1], expected, atol=1e-4)
    send(2.0, joints=False)  # poses now; joint states for the same tick a second later: stale
    time.sleep(1.0)
    send(2.0, poses=False)
    time.sleep(0.5)
    assert probe.count(FORWARD) == 1, "the expert acted on stale observations"
    assert "stale" in nodes.log("expert")
    send(3.0)
    wait_for(lambda: probe.count(FORWARD) == 2, 10, "a command for fresh observations")
