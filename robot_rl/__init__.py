"""robot_rl: learned manipulation policies on ROS 2 arms, and the tools to improve them from data."""

import os

# MuJoCo picks its GL backend when it is first imported: without a display, render offscreen (EGL)
# unless the user chose a backend, so `robot-rl collect --cameras` works on a headless machine.
if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
    os.environ.setdefault("MUJOCO_GL", "egl")

__version__ = "0.1.0"
