"""MuJoCo simulation of the arm and its tasks (gymnasium API, no ROS)."""
