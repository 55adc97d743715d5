"""The simulated arm driven by the scripted expert, for a ROS 2 install.

    ros2 launch robot_rl sim_expert.launch.py task:=lift mode:=lockstep

Parameters come from config/sim_expert.yaml; `task` and `mode` default to the values there.
Without `launch` installed, `robot-rl bringup sim_expert` starts the same graph
(robot_rl.bringup.GRAPHS["sim_expert"]; test/test_launch_files.py keeps the two in step).
"""
import os

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("robot_rl")
    params = os.path.join(share, "config", "sim_expert.yaml")
    with open(os.path.join(share, "urdf", "arm.urdf")) as f:
        robot_description = f.read()
    with open(params) as f:
        sim_defaults = yaml.safe_load(f)["mujoco_sim"]["ros__parameters"]
    task = LaunchConfiguration("task")
    mode = LaunchConfiguration("mode")
    return LaunchDescription([
        DeclareLaunchArgument("task", default_value=str(sim_defaults["task"]),
                              description="reach, push or lift (sim and expert)"),
        DeclareLaunchArgument("mode", default_value=str(sim_defaults["mode"]),
                              description="realtime or lockstep"),
        Node(package="robot_state_publisher", executable="robot_state_publisher",
             name="robot_state_publisher", output="screen",
             parameters=[params, {"robot_description": robot_description}]),
        Node(package="robot_rl", executable="mujoco_sim", name="mujoco_sim", output="screen",
             parameters=[params, {"task": task, "mode": mode}]),
        Node(package="robot_rl", executable="scripted_expert", name="scripted_expert", output="screen",
             parameters=[params, {"task": task}]),
    ])
