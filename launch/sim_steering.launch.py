"""The simulated arm driven by value-guided steering of a diffusion policy, for a ROS 2 install.

    ros2 launch robot_rl sim_steering.launch.py checkpoint:=runs/lift/best \
        value_checkpoint:=runs/value/checkpoint task:=lift

Parameters come from config/sim_steering.yaml; `task` and `mode` default to the values there.
diffusion_policy samples `num_samples` chunks per observation onto /policy/candidates and
commands nothing; value_steering executes the one its critic scores highest. Without `launch`
installed, `robot-rl bringup sim_steering -p checkpoint=<dir> -p value_checkpoint=<dir>` starts
the same graph (robot_rl.bringup.GRAPHS["sim_steering"]; test/test_launch_files.py keeps the two
in step).
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
    params = os.path.join(share, "config", "sim_steering.yaml")
    with open(params) as f:
        defaults = yaml.safe_load(f)
    sim_defaults = defaults["mujoco_sim"]["ros__parameters"]
    policy_defaults = defaults["diffusion_policy"]["ros__parameters"]
    steering_defaults = defaults["value_steering"]["ros__parameters"]
    task = LaunchConfiguration("task")
    mode = LaunchConfiguration("mode")
    checkpoint = LaunchConfiguration("checkpoint")
    value_checkpoint = LaunchConfiguration("value_checkpoint")
    return LaunchDescription([
        DeclareLaunchArgument("task", default_value=str(sim_defaults["task"]),
                              description="reach, push or lift: the task both checkpoints were trained on"),
        DeclareLaunchArgument("mode", default_value=str(sim_defaults["mode"]),
                              description="realtime or lockstep"),
        DeclareLaunchArgument("checkpoint", default_value=str(policy_defaults["checkpoint"]),
                              description="diffusion checkpoint folder (the generalist that samples candidates)"),
        DeclareLaunchArgument("value_checkpoint", default_value=str(steering_defaults["value_checkpoint"]),
                              description="value checkpoint folder (the critic that picks one)"),
        Node(package="robot_rl", executable="mujoco_sim", name="mujoco_sim", output="screen",
             parameters=[params, {"task": task, "mode": mode}]),
        Node(package="robot_rl", executable="diffusion_policy", name="diffusion_policy", output="screen",
             parameters=[params, {"checkpoint": checkpoint}]),
        Node(package="robot_rl", executable="value_steering", name="value_steering", output="screen",
             parameters=[params, {"value_checkpoint": value_checkpoint}]),
    ])
