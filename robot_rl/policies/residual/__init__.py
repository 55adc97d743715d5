"""robot_rl.policies.residual."""
