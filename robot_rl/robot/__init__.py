"""The robot model from any URDF: joints, gripper, limits, TCP, kinematics. Every layer asks it."""
from robot_rl.robot.catalog import DEFAULT_ROBOT, default_robot, load_robot, register_robot
from robot_rl.robot.model import RobotModel

__all__ = ["DEFAULT_ROBOT", "RobotModel", "default_robot", "load_robot", "register_robot"]
