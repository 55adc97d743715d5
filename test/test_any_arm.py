"""Any arm: a policy node against an emulated ros2_control driver, and a graph on the second arm.

The driver (test/fake_driver.py) is not the simulator: its /joint_states list the controller's
names (all different from the checkpoint's), in a shuffled order, with a head and a mobile base
joint too; the node is told the controller's command order and the name map. The policy is an
untrained tiny checkpoint of the 7-DoF arm whose actions roam the whole joint range, so the
guard has work to do.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from std_msgs.msg import Float64MultiArray

from arms import ARM
from robot_rl.ros import msgs
from ros_helpers import wait_for

pytestmark = pytest.mark.integration

POLICY = "robot_rl.ros.diffusion_policy_node"
FORWARD = "/forward_position_controller/commands"
DRIVER = str(Path(__file__).with_name("fake_driver.py"))
CONTROLLER = {n: f"ctl_{n}" for n in ARM.joint_names}
NAME_MAP = [f"{k}={v}" for k, v in CONTROLLER.items()]
ORDER = [CONTROLLER[n] for n in ("finger_joint", "joint3", "joint1", "joint7", "joint2", "joint5", "joint4", "joint6")]
POLICY_INDEX = [ARM.joint_names.index(n.removeprefix("ctl_")) for n in ORDER]  # controller slot -> checkpoint joint


@pytest.fixture(scope="module")
def arm_checkpoint(tmp_path_factory):
    """An untrained tiny policy of the 7-DoF arm (robot.json records it) reading joints + TCP."""
    import torch

    from robot_rl.policies.diffusion.config import DiffusionConfig
    from robot_rl.policies.diffusion.model import DiffusionPolicy
    from robot_rl.policies.diffusion.normalizer import Normalizer

    torch.manual_seed(0)
    config = DiffusionConfig(obs_keys=("joint_pos", "ee_pos"), obs_shapes={"joint_pos": (8,), "ee_pos": (3,)},
                             joint_names=ARM.joint_names, pred_horizon=8, action_horizon=4, down_dims=(16, 32),
                             n_groups=4, step_embed_dim=16, num_inference_steps=3)
    limits = {"min": ARM.lower.tolist(), "max": ARM.upper.tolist()}
    stats = {"joint_pos": limits, "action": limits, "ee_pos": {"min": [0.0, -0.5, 0.0], "max": [0.8, 0.5, 0.8]}}
    policy = DiffusionPolicy(config, Normalizer(stats), robot=ARM).eval()
    path = tmp_path_factory.mktemp("any_arm") / "ckpt"
    policy.save_checkpoint(path)
    return path


def start_driver(nodes, tmp_path):
    initial = [float(ARM.home[i]) for i in POLICY_INDEX]
    nodes.start("driver", [sys.executable, DRIVER, "--ros-args", "-p", f"joint_names:=[{','.join(ORDER)}]",
                           "-p", f"initial:=[{','.join(map(str, initial))}]",
                           "-p", f"stall_file:={tmp_path / 'stall'}", "-p", f"drop_file:={tmp_path / 'drop'}",
                           "-p", "drop_joint:=ctl_joint3"])
    return np.array(initial)


def test_policy_drives_a_foreign_driver_by_name_within_the_urdf_limits_and_holds(nodes, probe, arm_checkpoint, tmp_path):
    probe.subscribe(Float64MultiArray, FORWARD)
    initial = start_driver(nodes, tmp_path)
    nodes.node("policy", POLICY, {"checkpoint": str(arm_checkpoint), "joint_names": ORDER, "joint_name_map": NAME_MAP,
                                  "control_dt": 0.1, "max_age": 0.5, "request_lead": 1})
    wait_for(lambda: probe.count(FORWARD) >= 20, 60, "20 commands")
    commands = np.array([msgs.array_from_msg(m) for m in probe.all(FORWARD)])
    assert commands.shape[1] == 8 and np.all(np.isfinite(commands))
    lower, upper = ARM.lower[POLICY_INDEX], ARM.upper[POLICY_INDEX]  # the controller's order
    assert np.all(commands >= lower - 1e-9) and np.all(commands <= upper + 1e-9)
    step = ARM.max_step(0.1)[POLICY_INDEX]  # URDF velocity limits x the tick
    # in the controller's order: the first command is within a step of where the driver started
    # (a joint in the wrong slot would be off by far more: joint4 sits at -2.36, the finger at 0.04)
    assert np.all(np.abs(commands[0] - initial) <= step + 1e-9)
    assert np.all(np.abs(np.diff(commands, axis=0)) <= step + 1e-9)
    assert np.any(np.abs(np.diff(commands, axis=0)) > 0.5 * step)  # the policy does move the arm

    (tmp_path / "stall").touch()  # the driver stops publishing: the node holds
    wait_for(lambda: "observations are stale" in nodes.log("policy"), 10, "the stale warning")
    held = probe.count(FORWARD)
    time.sleep(1.0)
    assert probe.count(FORWARD) == held
    (tmp_path / "stall").unlink()
    wait_for(lambda: probe.count(FORWARD) > held + 3, 20, "commands after the driver resumed")

    (tmp_path / "drop").touch()  # a joint goes missing from /joint_states: refused clearly, and held
    wait_for(lambda: "joints ['ctl_joint3'] missing" in nodes.log("policy"), 10, "the missing-joint error")
    wait_for(lambda: "observations are stale" in nodes.log("policy").split("joints ['ctl_joint3'] missing")[-1],
             10, "the hold after the joint went missing")
    held = probe.count(FORWARD)
    time.sleep(1.0)
    assert probe.count(FORWARD) == held
    assert nodes.procs["policy"][0].poll() is None  # never dies of a message


@pytest.mark.parametrize("params, expected", [
    ({"joint_name_map": NAME_MAP[:-1]}, "missing ['finger_joint'], not the policy's ['ctl_finger_joint']"),
    ({"joint_name_map": NAME_MAP, "robot": "ur_arm"}, "trained on robot 'arm'"),
])
def test_names_that_do_not_match_or_another_robot_are_refused_at_start(nodes, arm_checkpoint, params, expected):
    p = nodes.node("policy", POLICY, {"checkpoint": str(arm_checkpoint), "joint_names": ORDER, **params})
    assert p.wait(60) == 2
    errors = [line for line in nodes.log("policy").splitlines() if expected in line]
    assert len(errors) == 1, nodes.log("policy")
    assert "ctl_joint1" in errors[0] or "ur_arm" in errors[0]


def test_record_demos_on_the_second_arm_over_dds(tmp_path):
    """The 6-DoF arm through the product's graph: sim + expert + recorder (`-p robot=ur_arm`),
    episodes run by `robot-rl episodes`; the dataset records the arm and its joint names, and the
    first episode of the run is whole (robot-rl episodes waits for the recorder's ~/ready)."""
    from robot_rl.data.dataset import EpisodeDataset

    log = open(tmp_path / "graph.log", "w")
    graph = subprocess.Popen([sys.executable, "-m", "robot_rl.cli", "bringup", "record_demos", "-p", "robot=ur_arm",
                              "-p", "task=lift", "-p", f"recorder.dataset={tmp_path / 'demos'}",
                              "-p", f"recorder.bag_dir={tmp_path / 'bags'}", "-p", "cameras=[]"],
                             start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    try:
        r = subprocess.run([sys.executable, "-m", "robot_rl.cli", "episodes", "--task", "lift", "--num-episodes", "2",
                            "--max-steps", "80", "--recorder", "recorder", "--service-timeout", "60",
                            "--out", str(tmp_path / "summary.json")], capture_output=True, text=True, timeout=240)
    finally:
        import os
        import signal

        os.killpg(graph.pid, signal.SIGINT)
        try:
            graph.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(graph.pid, signal.SIGKILL)
        log.close()
        print((tmp_path / "graph.log").read_text()[-6000:])
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["episodes"] == 2 and summary["success_rate"] == 1.0
    ds = EpisodeDataset.open(tmp_path / "demos")
    assert ds.robot is not None and ds.robot.name == "ur_arm"
    assert ds.meta["joint_names"][:3] == ["shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint"]
    assert ds.num_episodes == 2, (tmp_path / "graph.log").read_text()[-4000:]
    assert ds.keys["action"]["shape"] == [8] and all(ds.success)
    for i in range(ds.num_episodes):  # every episode whole from its start, the first one too (it used
        ep = ds.load_episode(i)  # to begin while the recorder still connected: cube already lifted)
        assert ep["object_poses"][0, 0, 2] < 0.03, f"episode {i} starts with the cube at {ep['object_poses'][0, 0]}"
        sync = ds.episode_meta(i)["sync"]  # from the reset's first observation on
        assert sync["trimmed_start"] == 0, sync
