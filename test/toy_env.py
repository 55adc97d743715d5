"""A gymnasium env that is not robot_rl's: a point moved towards the position it is commanded
(at most 0.1 per step) until it is within 0.1 of a goal. Dict observation, Box actions in
[-1, 1]^2, success in info["is_success"] (the gymnasium-robotics convention), 30 steps."""
import gymnasium
import numpy as np
from gymnasium import spaces


class PointReach(gymnasium.Env):
    def __init__(self):
        self.observation_space = spaces.Dict({"joint_pos": spaces.Box(-1, 1, (2,), np.float32),
                                              "goal": spaces.Box(-1, 1, (2,), np.float32)})
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.max_steps = 30

    def _obs(self):
        return {"joint_pos": self.pos.astype(np.float32), "goal": self.goal.astype(np.float32)}

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-0.5, 0.5, 2)
        self.goal = self.np_random.uniform(-0.6, 0.6, 2)
        self.t = 0
        return self._obs(), {"is_success": False}

    def step(self, action):
        target = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        self.pos = self.pos + np.clip(target - self.pos, -0.1, 0.1)
        self.t += 1
        success = bool(np.linalg.norm(self.pos - self.goal) < 0.1)
        return self._obs(), float(success), success, self.t >= self.max_steps, {"is_success": success}
