"""robot_rl.ros."""
