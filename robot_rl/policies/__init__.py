"""robot_rl.policies."""
