"""RobotModel from any URDF: joints, gripper conventions, limits, TCP, kinematics, records."""
import numpy as np
import pytest

from arms import ARM, UR
from robot_rl.errors import ConfigError
from robot_rl.robot import RobotModel, load_robot
from robot_rl.robot.catalog import read_robot_file, robot_for_joints, write_robot_file
from robot_rl.robot.kinematics import DOWN, Kinematics, tcp_positions


def test_the_shipped_arms_read_from_their_urdfs():
    assert ARM.arm_joints == tuple(f"joint{i}" for i in range(1, 8))
    assert ARM.gripper_joints == ("finger_joint",)  # its mimic is not a commanded joint
    assert UR.arm_joints == ("shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint",
                             "wrist_1_joint", "wrist_2_joint", "wrist_3_joint")
    assert UR.gripper_joints == ("left_finger_joint", "right_finger_joint")
    np.testing.assert_allclose(ARM.velocity, [2.175] * 4 + [2.61] * 3 + [0.2])
    np.testing.assert_allclose(ARM.max_step(0.1), ARM.velocity * 0.1)  # the guard's default step per tick
    assert ARM.gripper_open == (0.04,) and ARM.gripper_closed == (0.0,)
    np.testing.assert_allclose(UR.gripper_command(1.0), [0.04, 0.04])


def test_home_puts_both_grippers_down_above_the_table():
    for robot in (ARM, UR):
        pos, rot = Kinematics(robot).fk(robot.home)
        assert 0.25 < pos[0] < 0.45 and abs(pos[1]) < 0.01 and 0.25 < pos[2] < 0.5, robot.name
        assert np.abs(rot - DOWN).max() < 1e-2, robot.name


def test_ik_reaches_a_pose_on_the_six_dof_arm():
    kin = Kinematics(UR)
    target = np.array([0.55, -0.12, 0.08])
    q = UR.home[:6]
    for _ in range(10):
        q = kin.ik(q, target, DOWN, iterations=30)
    pos, rot = kin.fk(q)
    assert np.linalg.norm(pos - target) < 1e-3 and np.abs(rot - DOWN).max() < 1e-2


def _robot_description(extra: str = "") -> str:
    """A user's robot_description: meshes by package:// URI (not resolvable here), a head joint
    beside the arm, no gripper."""
    return f"""<robot name="my_arm">
  <link name="world_base"/>
  <link name="l1"><visual><geometry><mesh filename="package://my_arm/meshes/l1.dae"/></geometry></visual></link>
  <link name="l2"/>
  <link name="flange"/>
  <link name="head"/>
  <joint name="a1" type="revolute"><parent link="world_base"/><child link="l1"/>
    <origin xyz="0 0 0.3"/><axis xyz="0 0 1"/><limit lower="-3" upper="3" effort="50" velocity="1.5"/></joint>
  <joint name="a2" type="revolute"><parent link="l1"/><child link="l2"/>
    <origin xyz="0 0 0.4"/><axis xyz="0 1 0"/><limit lower="-2" upper="2" effort="50" velocity="1.0"/></joint>
  <joint name="tool" type="fixed"><parent link="l2"/><child link="flange"/><origin xyz="0.3 0 0"/></joint>
  <joint name="head_pan" type="continuous"><parent link="world_base"/><child link="head"/><axis xyz="0 0 1"/></joint>
  {extra}
</robot>"""


def test_a_robot_description_with_meshes_and_other_joints_gives_its_arm_and_kinematics():
    robot = RobotModel.from_urdf(_robot_description(), tcp_link="flange")
    assert robot.name == "my_arm" and robot.arm_joints == ("a1", "a2") and robot.gripper_joints == ()
    np.testing.assert_allclose(robot.velocity, [1.5, 1.0])
    pos, _ = Kinematics(robot).fk(np.zeros(2))
    np.testing.assert_allclose(pos, [0.3, 0.0, 0.7], atol=1e-9)
    pos, _ = Kinematics(robot).fk(np.array([np.pi / 2, 0.0]))
    np.testing.assert_allclose(pos, [0.0, 0.3, 0.7], atol=1e-9)
    # the kinematics, not the file, name the robot: another mesh or an extra link keeps the hash
    other = RobotModel.from_urdf(_robot_description('<link name="camera"/><joint name="cam" type="fixed"><parent link="l1"/><child link="camera"/></joint>').replace("l1.dae", "l1_v2.stl"),
                                 tcp_link="flange")
    assert other.kinematic_hash == robot.kinematic_hash
    moved = RobotModel.from_urdf(_robot_description().replace('xyz="0 0 0.4"', 'xyz="0 0 0.45"'), tcp_link="flange")
    assert moved.kinematic_hash != robot.kinematic_hash


def test_records_round_trip_and_bad_urdfs_are_one_line(tmp_path):
    write_robot_file(UR, tmp_path / "robot.json")
    again = read_robot_file(tmp_path / "robot.json")
    assert again == UR and again.same_kinematics(UR)
    assert read_robot_file(tmp_path / "none.json") is None
    assert robot_for_joints(ARM.joint_names) == ARM and robot_for_joints(("x",)) is None
    with pytest.raises(ConfigError, match="not valid URDF XML"):
        RobotModel.from_urdf("<robot><link></robot>")
    with pytest.raises(ConfigError, match="no URDF file here"):
        RobotModel.from_urdf(tmp_path / "missing.urdf")
    with pytest.raises(ConfigError, match="tcp_link 'nope' is not a link"):
        RobotModel.from_urdf(_robot_description(), tcp_link="nope")
    with pytest.raises(ConfigError, match="unknown robot 'franka'"):
        load_robot("franka")


def test_tcp_positions_follow_the_robot():
    q = np.stack([UR.home, UR.home])
    np.testing.assert_allclose(tcp_positions(UR, q)[0], Kinematics(UR).fk(UR.home)[0], atol=1e-6)
    assert tcp_positions(UR, q).shape == (2, 3)
