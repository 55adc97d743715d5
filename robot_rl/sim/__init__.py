"""robot_rl.sim."""
