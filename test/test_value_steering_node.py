"""value_steering node over DDS: argmax of the critic on a constructed candidate set; fallback."""
import time

import numpy as np
import pytest
import torch
from geometry_msgs.msg import PoseArray
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, Int32
from trajectory_msgs.msg import JointTrajectory

from robot_rl.policies.value.config import ValueConfig
from robot_rl.policies.value.model import ChunkCritic, ValueFunction, ValueNormalizer
from robot_rl.ros import msgs
from robot_rl.ros.candidates import candidates_to_msg
from robot_rl.sim.arm import HOME_QPOS, JOINT_NAMES
from robot_rl.sim.kinematics import ArmKinematics
from ros_helpers import wait_for

NODE = "robot_rl.ros.value_steering_node"
SEEDS = [3]


def _value_checkpoint(path, poison: bool = False):
    torch.manual_seed(SEEDS[0])
    cfg = ValueConfig(chunk=4, hidden=32, obs_keys=("joint_pos", "ee_pos", "object_poses"))
    critic = ChunkCritic(8 + 3 + 7, cfg)
    if poison:  # a critic that returns NaN for everything
        with torch.no_grad():
            critic.ensemble.net[-1].bias.fill_(float("nan"))
    vf = ValueFunction(critic, ValueNormalizer(-np.ones(18) * 3, np.ones(18) * 3), cfg)
    return vf, vf.save(path)


def _candidates():
    chunks = np.tile(HOME_QPOS, (6, 4, 1)).astype(np.float32)
    chunks[:, :, 0] += np.linspace(0.3, -0.3, 6)[:, None]
    chunks[:, :, 1] += np.linspace(-0.2, 0.2, 6)[:, None]
    return chunks


@pytest.mark.integration
@pytest.mark.parametrize("poison", [False, True])
def test_node_executes_the_argmax_or_falls_back(nodes, probe, tmp_path, poison):
    vf, ckpt = _value_checkpoint(tmp_path / "value", poison)
    for topic, kind in (("/value_steering/choice", Int32), ("/value_steering/scores", Float64MultiArray),
                        ("/joint_trajectory_controller/joint_trajectory", JointTrajectory)):
        probe.subscribe(kind, topic)
    nodes.node("steering", NODE, {"value_checkpoint": str(ckpt)})
    joints = probe.publisher(JointState, "/joint_states")
    poses = probe.publisher(PoseArray, "/task/object_poses")
    cands = probe.publisher(JointTrajectory, "/policy/candidates")
    stamp, cube = 5.0, np.array([[0.5, 0.0, 0.02, 1, 0, 0, 0]], np.float32)
    joints.publish(msgs.joint_state_to_msg(JOINT_NAMES, HOME_QPOS, stamp=stamp))
    poses.publish(msgs.poses_to_msg(cube, stamp))
    chunks = _candidates()
    time.sleep(1.0)  # the observations land before the candidates that refer to them
    cands.publish(candidates_to_msg(JOINT_NAMES, chunks, 0.1, stamp))
    wait_for(lambda: probe.count("/value_steering/choice") > 0, 20, "a steering decision")
    choice = probe.latest("/value_steering/choice").data
    ee_pos = ArmKinematics().fk(HOME_QPOS[:7])[0].astype(np.float32)
    obs = {"joint_pos": HOME_QPOS.astype(np.float32), "ee_pos": ee_pos, "object_poses": cube}
    if poison:
        assert choice == 0 and "fell back" in nodes.log("steering")
    else:
        expected = int(np.argmax(vf.score(obs, chunks)))
        assert expected != 0  # the argmax is not the fallback's candidate 0: the test can tell them apart
        assert choice == expected
        wait_for(lambda: probe.count("/joint_trajectory_controller/joint_trajectory") > 0, 5, "the executed chunk")
        names, times, positions = msgs.trajectory_from_msg(probe.latest("/joint_trajectory_controller/joint_trajectory"))
        assert positions.shape == (4, 8) and np.all(np.isfinite(positions))
