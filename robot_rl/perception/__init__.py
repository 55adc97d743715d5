"""robot_rl.perception."""
