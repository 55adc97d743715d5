"""Every knob of offline value learning for steering (Cal-QL or IQL), with defaults."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from robot_rl.errors import ConfigError


@dataclass
class ValueConfig:
    algo: str = "calql"                     # "calql" | "iql"
    obs_keys: tuple[str, ...] = ("joint_pos", "ee_pos", "object_poses")
    chunk: int = 8                          # actions per scored chunk; 1 scores single actions
    action_dim: int = 8
    robot: str = "arm"                      # the robot's name (robot_rl.robot): joint order, limits, kinematics
    task_space: bool = True                 # also score each target's TCP offset to the objects (value/task_space.py)
    num_objects: int = 1                    # object poses in the observation (set from the data)
    gamma: float = 0.99                     # per control step; a chunk discounts gamma**chunk
    reward: str = "success"                 # "success": 1 on the success step | "step_penalty": -1 until success
    num_critics: int = 2                    # twin critics; more makes an ensemble
    hidden: int = 256
    layers: int = 2
    lr: float = 3e-4
    batch_size: int = 256
    tau: float = 0.005
    num_steps: int = 20_000
    # Cal-QL: CQL regulariser with the Monte-Carlo return as a lower bound on policy-action values.
    cql_alpha: float = 1.0
    cql_num_actions: int = 8
    cql_temperature: float = 1.0
    entropy_coef: float = 0.01              # SAC-style actor used to sample CQL actions
    # IQL: expectile regression of V, AWR extraction of the actor.
    iql_expectile: float = 0.7
    awr_temperature: float = 3.0

    def __post_init__(self):
        self.obs_keys = tuple(self.obs_keys)
        if self.algo not in ("calql", "iql"):
            raise ConfigError(f"value algo must be calql or iql, got {self.algo!r}")
        if self.reward not in ("success", "step_penalty"):
            raise ConfigError(f"value reward must be success or step_penalty, got {self.reward!r}")
        if self.chunk < 1 or self.num_critics < 2 or not 0 < self.gamma <= 1:
            raise ConfigError("value config needs chunk >= 1, num_critics >= 2, gamma in (0, 1]")
        if not 0.5 <= self.iql_expectile < 1:
            raise ConfigError("iql_expectile must be in [0.5, 1)")

    @property
    def feature_dim(self) -> int:
        """Per-action critic input: the joint targets, plus their TCP offsets with task_space."""
        return self.action_dim + (3 * self.num_objects if self.task_space else 0)

    @property
    def offset_objects(self) -> int:
        """Objects whose TCP offsets the critic sees (0 without task_space)."""
        return self.num_objects if self.task_space else 0

    @property
    def chunk_dim(self) -> int:
        return self.chunk * self.feature_dim

    def to_dict(self) -> dict:
        return asdict(self)
