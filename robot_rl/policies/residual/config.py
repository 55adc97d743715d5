"""Every knob of residual off-policy RL (ResFiT-style), with defaults."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from robot_rl.errors import ConfigError
from robot_rl.robot import load_robot


# arm joints 0.08 rad; the held TCP offset 5 mm per step (with offset_decay 0.9: at most 5 cm
# held by a constant correction); gripper joints 2 cm
DEFAULT_SCALE = {"joint": (0.08, 0.02), "task": (0.005, 0.02)}  # (arm joint or TCP axis, gripper joint)
SPACES = tuple(DEFAULT_SCALE)
ENV_SCALE = 0.05  # without a robot: a correction of up to 5 % of each action's half-range per step


def arm_gripper_scale(space: str, arm: float, gripper: float, robot="arm") -> tuple[float, ...]:
    """residual_scale from one arm value (rad per joint, or m per TCP axis) and the gripper's."""
    r = load_robot(robot)
    return (arm,) * (r.num_arm if space == "joint" else 3) + (gripper,) * len(r.gripper_joints)


@dataclass
class ResidualConfig:
    # observation keys, or derived features (policies/features.py: object_rel, target_rel,
    # chunk_end_rel, chunk_left)
    obs_keys: tuple[str, ...] = ("joint_pos", "joint_vel", "ee_pos", "object_poses")
    action_dim: int = 0           # joint targets per action; 0: the robot's joints
    robot: str = "arm"            # the robot's name (robot_rl.robot): joints, limits, kinematics;
    # "" for an environment that is not an arm of ours: its action space's bounds are the limits
    action_low: tuple[float, ...] = ()
    action_high: tuple[float, ...] = ()
    # 'joint': a correction per joint target; 'task': a TCP displacement + the finger (space.py).
    residual_space: str = "joint"
    # Largest correction per step, one per correction value: rad per arm joint (joint space) or
    # metres along x, y, z (task space), then metres for the gripper finger. Empty: DEFAULT_SCALE.
    residual_scale: tuple[float, ...] = ()
    max_offset: float = 0.08      # task space: the largest TCP offset the residual may hold, m per axis
    offset_decay: float = 0.9     # task space: the held offset is multiplied by this every step (< 1: it leaks)
    # 128 wide: a 10-member 256-wide ensemble update costs ~4x more on a 2-core CPU (bench/residual_efficiency.py).
    actor_hidden: int = 128
    actor_layers: int = 2
    critic_hidden: int = 128
    critic_layers: int = 2
    num_critics: int = 10
    gamma: float = 0.99
    n_step: int = 3
    tau: float = 0.005
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    batch_size: int = 256
    utd_ratio: int = 2            # critic updates per environment step
    actor_delay: int = 2          # one actor update per this many critic updates (TD3)
    target_noise: float = 0.2     # TD3 target smoothing, in units of residual_scale
    noise_clip: float = 0.5
    exploration_noise: float = 0.1
    grad_clip: float = 10.0
    # L2 on the pre-tanh correction: keeps the actor off tanh's flat tails, where its gradient
    # vanishes and a residual pushed to +-scale by an early, wrong critic could never come back.
    residual_penalty: float = 0.1
    # TD3+BC (Fujimoto & Gu 2021): pull the actor towards the demonstrations' corrections
    # (demo action - relabelled base action) on the demo half of each batch; 0: plain RLPD.
    bc_weight: float = 0.0
    warmup_steps: int = 2000      # env steps of base + small-noise rollouts before learning
    critic_warmup_updates: int = 1000  # critic-only updates before the actor moves
    v_min: float = 0.0            # return range of the sparse reward: TD targets are clipped to it
    v_max: float = 1.0
    buffer_size: int = 300_000

    def __post_init__(self):
        self.obs_keys = tuple(self.obs_keys)
        self.action_low = tuple(float(x) for x in self.action_low)
        self.action_high = tuple(float(x) for x in self.action_high)
        if self.residual_space not in SPACES:
            raise ConfigError(f"residual_space must be one of {SPACES}, not {self.residual_space!r}")
        if not self.robot:
            low, high = np.asarray(self.action_low), np.asarray(self.action_high)
            if not len(low) or low.shape != high.shape or not np.all(np.isfinite(low) & np.isfinite(high) & (high > low)):
                raise ConfigError("a residual without a robot needs finite action_low < action_high (the "
                                  f"environment's action space), got {self.action_low} and {self.action_high}")
            if self.residual_space != "joint":
                raise ConfigError("residual_space task needs a robot (its kinematics); use joint")
        self.action_dim = int(self.action_dim) or (load_robot(self.robot).num_joints if self.robot
                                                   else len(self.action_low))
        default = (arm_gripper_scale(self.residual_space, *DEFAULT_SCALE[self.residual_space], self.robot)
                   if self.robot else ENV_SCALE * (np.asarray(self.action_high) - np.asarray(self.action_low)) / 2)
        self.residual_scale = tuple(float(s) for s in (self.residual_scale or default))
        if len(self.residual_scale) != self.correction_dim:
            raise ConfigError(f"residual_scale has {len(self.residual_scale)} entries; a {self.residual_space}-space "
                              f"correction has {self.correction_dim}")
        if not self.max_offset > 0 or not 0 < self.offset_decay <= 1:
            raise ConfigError("residual config needs max_offset > 0 and offset_decay in (0, 1]")
        if self.n_step < 1 or not 0 < self.gamma <= 1 or not 0 < self.tau <= 1:
            raise ConfigError("residual config needs n_step >= 1, gamma in (0, 1], tau in (0, 1]")
        if self.num_critics < 2:
            raise ConfigError("residual config needs num_critics >= 2 (the target is a min over a pair)")
        if self.utd_ratio < 1 or self.actor_delay < 1 or self.batch_size < 2:
            raise ConfigError("residual config needs utd_ratio >= 1, actor_delay >= 1, batch_size >= 2")

    def limits(self) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) of an action: the robot's joint limits, or the environment's action bounds."""
        if self.robot:
            return load_robot(self.robot).joint_limits()
        return np.asarray(self.action_low, np.float64), np.asarray(self.action_high, np.float64)

    @property
    def correction_dim(self) -> int:
        """Values in one correction: every joint target, or TCP x, y, z + the gripper joints."""
        if not self.robot:
            return len(self.action_low)
        r = load_robot(self.robot)
        return r.num_joints if self.residual_space == "joint" else 3 + len(r.gripper_joints)

    def to_dict(self) -> dict:
        return asdict(self)
