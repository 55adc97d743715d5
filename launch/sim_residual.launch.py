"""The simulated arm driven by a residual policy on top of a diffusion policy, for a ROS 2 install.

    ros2 launch robot_rl sim_residual.launch.py checkpoint:=runs/lift/best \
        residual_checkpoint:=runs/residual/checkpoint task:=lift learn:=true

Parameters come from config/sim_residual.yaml; `task`, `mode` and `learn` default to the values
there. diffusion_policy publishes its chunks on /policy/action_chunk and commands nothing;
residual_policy adds its correction and commands the arm (and with learn:=true trains it
online, saving to its out_dir). Without `launch` installed,
`robot-rl bringup sim_residual -p checkpoint=<dir> -p residual_checkpoint=<dir>` starts the same
graph (robot_rl.bringup.GRAPHS["sim_residual"]; test/test_launch_files.py keeps the two in step).
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
    params = os.path.join(share, "config", "sim_residual.yaml")
    with open(params) as f:
        defaults = yaml.safe_load(f)
    sim_defaults = defaults["mujoco_sim"]["ros__parameters"]
    policy_defaults = defaults["diffusion_policy"]["ros__parameters"]
    residual_defaults = defaults["residual_policy"]["ros__parameters"]
    task = LaunchConfiguration("task")
    mode = LaunchConfiguration("mode")
    checkpoint = LaunchConfiguration("checkpoint")
    residual_checkpoint = LaunchConfiguration("residual_checkpoint")
    learn = LaunchConfiguration("learn")
    return LaunchDescription([
        DeclareLaunchArgument("task", default_value=str(sim_defaults["task"]),
                              description="reach, push or lift: the task the checkpoints were trained on"),
        DeclareLaunchArgument("mode", default_value=str(sim_defaults["mode"]),
                              description="realtime or lockstep"),
        DeclareLaunchArgument("checkpoint", default_value=str(policy_defaults["checkpoint"]),
                              description="diffusion checkpoint folder (the base policy)"),
        DeclareLaunchArgument("residual_checkpoint", default_value=str(residual_defaults["residual_checkpoint"]),
                              description="residual checkpoint folder; empty: zero residual"),
        DeclareLaunchArgument("learn", default_value=str(residual_defaults["learn"]).lower(),
                              description="true: train the residual online"),
        Node(package="robot_rl", executable="mujoco_sim", name="mujoco_sim", output="screen",
             parameters=[params, {"task": task, "mode": mode}]),
        Node(package="robot_rl", executable="diffusion_policy", name="diffusion_policy", output="screen",
             parameters=[params, {"checkpoint": checkpoint}]),
        Node(package="robot_rl", executable="residual_policy", name="residual_policy", output="screen",
             parameters=[params, {"residual_checkpoint": residual_checkpoint, "learn": learn}]),
    ])
