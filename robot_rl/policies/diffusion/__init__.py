"""robot_rl.policies.diffusion."""
