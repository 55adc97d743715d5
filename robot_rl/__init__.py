"""robot_rl: learned manipulation policies on ROS 2 arms, and the tools to improve them from data."""

__version__ = "0.1.0"
