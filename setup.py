"""Packaging for colcon (ament_python) and for `pip install -e .` with no ROS distro.

The data files land in share/robot_rl/ where `ros2 launch` and ament_index look for them;
`robot_rl.paths` finds the same folders in a source checkout.
"""
import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "robot_rl"


def files(pattern):
    """Plain files only: data_files cannot hold folders."""
    return sorted(p for p in glob(pattern) if os.path.isfile(p))


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*", "bench", "bench.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        ("share/" + PACKAGE + "/launch", files("launch/*.launch.py")),
        ("share/" + PACKAGE + "/config", files("config/*.yaml") + files("config/*.json")),
        ("share/" + PACKAGE + "/urdf", files("urdf/*")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="robot_rl maintainers",
    maintainer_email="robot_rl@example.com",
    description="Learned manipulation policies on ROS 2 arms and a MuJoCo arm on ros2_control topics.",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "mujoco_sim = robot_rl.ros.mujoco_sim_node:main",
            "scripted_expert = robot_rl.ros.scripted_expert_node:main",
            "episode_runner = robot_rl.ros.episode_runner_node:main",
            "recorder = robot_rl.ros.recorder_node:main",
            "diffusion_policy = robot_rl.ros.diffusion_policy_node:main",
            "offline_trainer = robot_rl.ros.offline_trainer_node:main",
            "residual_policy = robot_rl.ros.residual_policy_node:main",
            "value_steering = robot_rl.ros.value_steering_node:main",
            "robot-rl = robot_rl.cli:main",
        ],
    },
)
