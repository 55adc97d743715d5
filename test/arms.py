"""The shipped arms as tests use them: the 7-DoF arm's names, limits and home, from its RobotModel."""
from robot_rl.robot import load_robot
from robot_rl.robot.kinematics import Kinematics, down_orientation, kinematics_for
from robot_rl.robot.kinematics import tcp_positions as _tcp_positions

ARM = load_robot("arm")
UR = load_robot("ur_arm")
JOINT_NAMES = ARM.joint_names
ARM_JOINTS = ARM.arm_joints
GRIPPER_JOINT = ARM.gripper_joints[0]
HOME_QPOS = ARM.home
joint_limits = ARM.joint_limits


def ArmKinematics():  # noqa: N802 - the 7-DoF arm's kinematics, as the tests knew them
    return Kinematics(ARM)


def tcp_positions(joint_targets):
    return _tcp_positions(ARM, joint_targets)


__all__ = ["ARM", "UR", "JOINT_NAMES", "ARM_JOINTS", "GRIPPER_JOINT", "HOME_QPOS", "joint_limits",
           "ArmKinematics", "Kinematics", "down_orientation", "kinematics_for", "tcp_positions"]
