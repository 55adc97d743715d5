"""The simulated arm driven by a diffusion policy checkpoint, for a ROS 2 install.

    ros2 launch robot_rl sim_diffusion.launch.py checkpoint:=runs/diffusion/best task:=push

Parameters come from config/sim_diffusion.yaml; `task` and `mode` default to the values there.
The checkpoint can be swapped while running: `ros2 param set /diffusion_policy checkpoint <dir>`.
Without `launch` installed, `robot-rl bringup sim_diffusion -p checkpoint=<dir>` starts the same
graph (robot_rl.bringup.GRAPHS["sim_diffusion"]; test/test_launch_files.py keeps the two in step).
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
    params = os.path.join(share, "config", "sim_diffusion.yaml")
    with open(params) as f:
        defaults = yaml.safe_load(f)
    sim_defaults = defaults["mujoco_sim"]["ros__parameters"]
    policy_defaults = defaults["diffusion_policy"]["ros__parameters"]
    task = LaunchConfiguration("task")
    mode = LaunchConfiguration("mode")
    checkpoint = LaunchConfiguration("checkpoint")
    return LaunchDescription([
        DeclareLaunchArgument("task", default_value=str(sim_defaults["task"]),
                              description="reach, push or lift: the task the checkpoint was trained on"),
        DeclareLaunchArgument("mode", default_value=str(sim_defaults["mode"]),
                              description="realtime or lockstep"),
        DeclareLaunchArgument("checkpoint", default_value=str(policy_defaults["checkpoint"]),
                              description="diffusion checkpoint folder"),
        Node(package="robot_rl", executable="mujoco_sim", name="mujoco_sim", output="screen",
             parameters=[params, {"task": task, "mode": mode}]),
        Node(package="robot_rl", executable="diffusion_policy", name="diffusion_policy", output="screen",
             parameters=[params, {"checkpoint": checkpoint}]),
    ])
