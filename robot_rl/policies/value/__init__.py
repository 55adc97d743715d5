"""robot_rl.policies.value."""
