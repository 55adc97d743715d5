"""robot_rl.train."""
