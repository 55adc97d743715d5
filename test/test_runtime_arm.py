"""The arm a node drives, without ROS: joints by name through a map, the guard from the URDF."""
import numpy as np
import pytest

from arms import ARM, UR
from robot_rl.errors import ConfigError, DataError
from robot_rl.runtime.arm import ArmConfig, ArmInterface
from robot_rl.runtime.joints import JointMap

CONTROLLER = {n: f"ctl_{n}" for n in ARM.joint_names}  # a driver whose names all differ
NAME_MAP = tuple(f"{k}={v}" for k, v in CONTROLLER.items())
SHUFFLED = tuple(CONTROLLER[n] for n in ("finger_joint", "joint3", "joint1", "joint7", "joint2", "joint5",
                                         "joint4", "joint6"))


def test_a_map_reads_joint_states_by_name_and_commands_in_the_controllers_order():
    joints = JointMap(ARM.joint_names, SHUFFLED, NAME_MAP)
    q = np.arange(8.0)  # policy order: joint1..joint7, finger
    command = joints.to_controller(q)
    assert [CONTROLLER[ARM.joint_names[int(v)]] for v in command] == list(SHUFFLED)
    np.testing.assert_array_equal(joints.to_policy(command), q)
    names = ["head_pan", *reversed(SHUFFLED), "base_x"]  # extra joints, another order
    by_name = dict(zip(SHUFFLED, command))
    got, vel = joints.from_joint_state(names, [9.0, *[by_name[n] for n in reversed(SHUFFLED)], -9.0], [])
    np.testing.assert_array_equal(got, q)
    np.testing.assert_array_equal(vel, np.zeros(8))


def test_mismatched_or_malformed_joints_are_refused_with_both_sides():
    with pytest.raises(ConfigError, match=r"missing \['ctl_finger_joint'\].*joint_name_map"):
        JointMap(ARM.joint_names, SHUFFLED[1:], NAME_MAP)
    with pytest.raises(ConfigError, match="not joints of the policy"):
        JointMap(ARM.joint_names, (), ("elbow=ctl_elbow",))
    with pytest.raises(ConfigError, match="checkpoint_name=controller_name"):
        JointMap(ARM.joint_names, (), ("joint1",))
    joints = JointMap(ARM.joint_names, SHUFFLED, NAME_MAP)
    with pytest.raises(DataError, match=r"joints \['ctl_finger_joint'\] missing"):
        joints.from_joint_state(list(SHUFFLED[1:]), np.zeros(7))
    with pytest.raises(DataError, match="8 names but 7 positions"):
        joints.from_joint_state(list(SHUFFLED), np.zeros(7))
    with pytest.raises(DataError, match="non-finite"):
        joints.from_joint_state(list(SHUFFLED), [np.nan] + [0.0] * 7)


def test_a_checkpoint_of_another_robot_is_refused_at_start():
    with pytest.raises(ConfigError, match=r"trained on robot 'arm'.*this is robot 'ur_arm'.*shoulder_pan_joint"):
        ArmInterface.build(ArmConfig(robot="ur_arm"), 0.1, trained=ARM)
    arm = ArmInterface.build(ArmConfig(robot="ur_arm"), 0.1, trained=UR)
    assert arm.joints.controller_joints == UR.joint_names


def test_the_step_limit_is_the_urdf_velocity_times_the_tick_and_start_up_stays_within_a_step():
    arm = ArmInterface.build(ArmConfig(joint_names=SHUFFLED, joint_name_map=NAME_MAP), 0.1)
    step = ARM.velocity * 0.1  # 0.2175 rad for joint1-4, 0.261 for joint5-7, 0.02 m for the finger
    np.testing.assert_allclose(arm.joints.to_policy(arm.guard.max_step), step)
    home = ARM.home
    arm.reset_guard(home)
    far = home + 1.0
    first = arm.joints.to_policy(arm.command(far).command)
    np.testing.assert_allclose(np.abs(first - home), np.minimum(step, np.abs(np.clip(far, ARM.lower, ARM.upper) - home)))
    # a second command at once (a late chunk answering two ticks): still one step from the arm,
    # which has not moved; then the next measurement lets the arm go on one step per tick
    second = arm.joints.to_policy(arm.command(far).command)
    np.testing.assert_allclose(second, first)
    arm.observe(home)
    arm.observe(first)
    third = arm.joints.to_policy(arm.command(far).command)
    assert np.all(np.abs(third - first) <= step + 1e-12) and np.any(np.abs(third - home) > step)
    assert arm.command(np.zeros(7)).refusal is not None  # wrong length: refused, last command held


def test_overrides_of_the_step_limit():
    arm = ArmInterface.build(ArmConfig(max_step=0.05, gripper_max_step=0.01), 0.1)
    np.testing.assert_allclose(arm.guard.max_step, [0.05] * 7 + [0.01])
    with pytest.raises(ConfigError):
        ArmConfig(max_step=-1.0)
