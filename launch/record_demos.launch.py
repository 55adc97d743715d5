"""Demonstrations through the recorder: the simulated arm, the scripted expert and the recorder.

    ros2 launch robot_rl record_demos.launch.py task:=push quality:=medium dataset:=data/push_demos

Parameters come from config/record_demos.yaml. Drive episodes with /sim/reset, /recorder/start
and /recorder/stop_success or /recorder/stop_failure (std_srvs/Trigger); the recorder writes a
rosbag2 MCAP bag under bags/ and appends each stopped episode to the dataset. Without `launch`,
`robot-rl bringup record_demos` starts the same graph (robot_rl.bringup.GRAPHS["record_demos"]).
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
    params = os.path.join(share, "config", "record_demos.yaml")
    with open(params) as f:
        defaults = yaml.safe_load(f)
    task = LaunchConfiguration("task")
    quality = LaunchConfiguration("quality")
    dataset = LaunchConfiguration("dataset")
    return LaunchDescription([
        DeclareLaunchArgument("task", default_value=str(defaults["mujoco_sim"]["ros__parameters"]["task"]),
                              description="reach, push or lift (sim, expert and episode meta)"),
        DeclareLaunchArgument("quality", default_value=str(defaults["scripted_expert"]["ros__parameters"]["quality"]),
                              description="expert quality: expert, good, medium, poor or 0..1"),
        DeclareLaunchArgument("dataset", default_value=str(defaults["recorder"]["ros__parameters"]["dataset"]),
                              description="episode dataset directory"),
        Node(package="robot_rl", executable="mujoco_sim", name="mujoco_sim", output="screen",
             parameters=[params, {"task": task}]),
        Node(package="robot_rl", executable="scripted_expert", name="scripted_expert", output="screen",
             parameters=[params, {"task": task, "quality": quality}]),
        Node(package="robot_rl", executable="recorder", name="recorder", output="screen",
             parameters=[params, {"task": task, "source_quality": quality, "dataset": dataset}]),
    ])
