"""DiffusionConfig: every knob of the diffusion policy, with its default, checked on creation.

Defaults follow Diffusion Policy (Chi et al., RSS 2023) except the U-Net width: (32, 64, 128)
(~1.4M parameters with low-dim observations) instead of the paper's (256, 512, 1024) (~65M):
the size the push/lift results were trained with on the CPU.
Batch-1 CPU inference streams every weight once per denoising step, so latency grows with the
parameter count (~5.5 ms of op overhead + ~3.5 ms per million parameters per 10-step chunk on
the 2-core dev machine); at this width a DDIM-10 chunk keeps p99 under 30 ms even while other
processes load the machine (bench/diffusion_latency.py). (48, 96, 192) (~2.8M) and
(64, 128, 256) (~4.6M) are slower to run and, on this CPU, to train.

Which encoder reads a key is decided by its name: `<cam>_rgb` -> RGB ResNet (one per camera),
`points` / `*_points` -> PointNet, anything else -> the low-dim state vector.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from robot_rl.errors import ConfigError
from robot_rl.policies.config_fields import check_fields

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
PREDICTION_TYPES = ("epsilon", "sample")
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")
LOWDIM_ENCODERS = ("identity", "mlp")
INFERENCE_BACKENDS = ("auto", "trace", "eager")


def is_rgb_key(key: str) -> bool:
    return key.endswith("_rgb")


def is_points_key(key: str) -> bool:
    return key == "points" or key.endswith("_points")


def is_lowdim_key(key: str) -> bool:
    return not (is_rgb_key(key) or is_points_key(key))


def _default_obs_shapes() -> dict[str, tuple[int, ...]]:
    # Shapes of the default keys for the `push` task (object_poses: cube and goal).
    return {"joint_pos": (8,), "ee_pos": (3,), "object_poses": (2, 7)}


@dataclass
class DiffusionConfig:
    # --- observations and actions -------------------------------------------------------------
    obs_keys: tuple[str, ...] = ("joint_pos", "ee_pos", "object_poses")
    obs_shapes: dict[str, tuple[int, ...]] = field(default_factory=_default_obs_shapes)
    action_dim: int = 8
    # The name of each action dimension (and of joint_pos's values): the robot's joints in the
    # order the policy was trained on. Nodes map controller joints onto it by name. Empty: unnamed
    # (a checkpoint from before names were recorded; nodes then take the robot's own order).
    joint_names: tuple[str, ...] = ()
    obs_horizon: int = 2  # To: observations the policy conditions on
    pred_horizon: int = 16  # Tp: actions predicted per chunk
    action_horizon: int = 8  # Ta: actions executed per chunk (receding horizon)

    # --- U-Net ----------------------------------------------------------------------------------
    down_dims: tuple[int, ...] = (32, 64, 128)  # 1.4M parameters: the size trained for the reported push/lift results
    kernel_size: int = 5
    n_groups: int = 8
    step_embed_dim: int = 128

    # --- noise schedule -------------------------------------------------------------------------
    num_train_timesteps: int = 100
    beta_schedule: str = "squaredcos_cap_v2"
    beta_start: float = 0.0001  # only used by the linear schedules
    beta_end: float = 0.02
    prediction_type: str = "epsilon"
    clip_sample: bool = True
    clip_sample_range: float = 1.0
    num_inference_steps: int = 10  # DDIM steps per chunk
    # "trailing" starts DDIM at t = T-1 (pure noise), as training assumes; "leading" is the
    # diffusers default used by the reference code (starts at T - T/steps).
    timestep_spacing: str = "trailing"

    # --- low-dim encoder ------------------------------------------------------------------------
    lowdim_encoder: str = "identity"  # identity | mlp on the normalized state vector
    lowdim_mlp_dims: tuple[int, ...] = (256, 128)

    # --- RGB encoder (one ResNet-18-style trunk per camera) -----------------------------------
    rgb_widths: tuple[int, ...] = (32, 64, 128, 256)  # ResNet-18 uses (64, 128, 256, 512)
    rgb_blocks_per_stage: int = 2
    rgb_group_size: int = 16  # GroupNorm groups = channels // group_size
    spatial_softmax_num_kp: int = 32
    rgb_feature_dim: int = 64
    crop_shape: tuple[int, int] | None = (84, 84)  # (H, W); random in training, centre in eval
    crop_is_random: bool = True

    # --- point-cloud encoder (DP3-style PointNet) -------------------------------------------------
    pointnet_dims: tuple[int, ...] = (32, 64, 128)  # 0.99 on lift from 200 demos; (64, 128, 256) is 2.7x slower on CPU
    points_feature_dim: int = 64
    points_use_rgb: bool = False  # False: xyz only, as DP3

    # --- optimisation (used by robot_rl.train.diffusion) -----------------------------------
    lr: float = 1e-4
    adam_betas: tuple[float, float] = (0.95, 0.999)
    adam_eps: float = 1e-8
    weight_decay: float = 1e-6
    lr_scheduler: str = "cosine"
    lr_warmup_steps: int = 500
    ema_power: float = 0.75
    ema_inv_gamma: float = 1.0
    ema_min_decay: float = 0.0
    ema_max_decay: float = 0.9999
    ema_update_after_step: int = 0

    # --- inference ------------------------------------------------------------------------------
    # auto: trace the per-step U-Net with torch.jit on CPU (falls back to eager on any failure).
    inference_backend: str = "auto"
    # intra-op threads during predict/sample calls (restored afterwards); 0 leaves torch's
    # setting alone. One thread is fastest for batch-1 inference on a busy 2-core machine.
    inference_threads: int = 1
    # Scale of the initial DDIM noise: 1 samples the learned distribution; 0 is deterministic DDIM
    # (the chunk the denoiser maps zero noise to). A briefly trained policy's failures can be its
    # sampling noise: lift 0.56 -> 0.99, push 0.45 -> 0.94 at 0 (docs/results.md, "Sampling noise").
    noise_scale: float = 1.0

    def __post_init__(self):
        self.obs_keys = tuple(self.obs_keys)
        self.obs_shapes = {k: tuple(int(d) for d in v) for k, v in dict(self.obs_shapes).items()}
        for name in ("down_dims", "lowdim_mlp_dims", "rgb_widths", "pointnet_dims", "adam_betas", "joint_names"):
            setattr(self, name, tuple(getattr(self, name)))
        if self.crop_shape is not None:
            self.crop_shape = tuple(int(v) for v in self.crop_shape)
        self.validate()

    def validate(self) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise ConfigError(f"DiffusionConfig: {what}")

        need(len(self.obs_keys) > 0, "obs_keys is empty; name at least one observation key")
        need(len(set(self.obs_keys)) == len(self.obs_keys), f"obs_keys has duplicates: {self.obs_keys}")
        for key in self.obs_keys:
            need(key in self.obs_shapes, f"no shape for obs key {key!r} in obs_shapes")
            shape = self.obs_shapes[key]
            if is_rgb_key(key):
                need(len(shape) == 3 and shape[2] == 3, f"{key} must be (H, W, 3), got {shape}")
                if self.crop_shape is not None:
                    need(self.crop_shape[0] <= shape[0] and self.crop_shape[1] <= shape[1],
                         f"crop_shape {self.crop_shape} larger than {key} {shape[:2]}")
            elif is_points_key(key):
                need(len(shape) == 2 and shape[1] >= 3, f"{key} must be (N, >=3), got {shape}")
                need(not self.points_use_rgb or shape[1] >= 6, f"points_use_rgb needs (N, 6) {key}, got {shape}")
        need(self.action_dim >= 1, f"action_dim must be >= 1, got {self.action_dim}")
        need(not self.joint_names or len(self.joint_names) == self.action_dim,
             f"joint_names names {len(self.joint_names)} values, action_dim is {self.action_dim}")
        need(self.obs_horizon >= 1, f"obs_horizon must be >= 1, got {self.obs_horizon}")
        need(1 <= self.action_horizon <= self.pred_horizon - self.obs_horizon + 1,
             f"action_horizon must be in [1, pred_horizon - obs_horizon + 1] = "
             f"[1, {self.pred_horizon - self.obs_horizon + 1}], got {self.action_horizon}")
        need(len(self.down_dims) >= 1 and all(d > 0 for d in self.down_dims), f"bad down_dims {self.down_dims}")
        need(all(d % self.n_groups == 0 for d in self.down_dims),
             f"every down_dims entry must be divisible by n_groups={self.n_groups}: {self.down_dims}")
        stride = 2 ** (len(self.down_dims) - 1)
        need(self.pred_horizon % stride == 0,
             f"pred_horizon={self.pred_horizon} must be divisible by 2**(len(down_dims)-1) = {stride}")
        need(self.kernel_size % 2 == 1, f"kernel_size must be odd, got {self.kernel_size}")
        need(self.step_embed_dim % 2 == 0 and self.step_embed_dim >= 4,
             f"step_embed_dim must be even and >= 4, got {self.step_embed_dim}")
        need(self.beta_schedule in BETA_SCHEDULES, f"beta_schedule must be one of {BETA_SCHEDULES}")
        need(self.prediction_type in PREDICTION_TYPES, f"prediction_type must be one of {PREDICTION_TYPES}")
        need(self.timestep_spacing in TIMESTEP_SPACINGS, f"timestep_spacing must be one of {TIMESTEP_SPACINGS}")
        need(self.num_train_timesteps >= 2, f"num_train_timesteps must be >= 2, got {self.num_train_timesteps}")
        need(1 <= self.num_inference_steps <= self.num_train_timesteps,
             f"num_inference_steps must be in [1, {self.num_train_timesteps}], got {self.num_inference_steps}")
        need(self.lowdim_encoder in LOWDIM_ENCODERS, f"lowdim_encoder must be one of {LOWDIM_ENCODERS}")
        need(all(w % self.rgb_group_size == 0 for w in self.rgb_widths),
             f"rgb_widths {self.rgb_widths} must be multiples of rgb_group_size={self.rgb_group_size}")
        need(len(self.rgb_widths) >= 1 and self.rgb_blocks_per_stage >= 1, "rgb encoder needs >= 1 stage and block")
        need(self.spatial_softmax_num_kp >= 1, "spatial_softmax_num_kp must be >= 1")
        need(0.0 <= self.ema_min_decay <= self.ema_max_decay < 1.0, "need 0 <= ema_min_decay <= ema_max_decay < 1")
        need(self.ema_power > 0, f"ema_power must be > 0, got {self.ema_power}")
        need(self.lr > 0 and self.weight_decay >= 0 and self.lr_warmup_steps >= 0,
             "need lr > 0, weight_decay >= 0, lr_warmup_steps >= 0")
        need(self.inference_backend in INFERENCE_BACKENDS, f"inference_backend must be one of {INFERENCE_BACKENDS}")
        need(self.inference_threads >= 0, f"inference_threads must be >= 0, got {self.inference_threads}")
        need(self.noise_scale >= 0, f"noise_scale must be >= 0, got {self.noise_scale}")

    # --- derived ---------------------------------------------------------------------------------
    @property
    def lowdim_keys(self) -> tuple[str, ...]:
        return tuple(k for k in self.obs_keys if is_lowdim_key(k))

    @property
    def rgb_keys(self) -> tuple[str, ...]:
        return tuple(k for k in self.obs_keys if is_rgb_key(k))

    @property
    def points_keys(self) -> tuple[str, ...]:
        return tuple(k for k in self.obs_keys if is_points_key(k))

    # --- JSON ------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["obs_shapes"] = {k: list(v) for k, v in self.obs_shapes.items()}
        return {"policy": "diffusion", **d}

    @classmethod
    def from_dict(cls, d: dict, complete: bool = False) -> DiffusionConfig:
        """Build from `to_dict()` output; unknown fields are a ConfigError (a newer checkpoint?).
        `complete` (a checkpoint's config.json): every field must be there, with a value of its
        type -- a missing key would silently take today's default and act differently."""
        d = {k: v for k, v in d.items() if k != "policy"}
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise ConfigError(f"DiffusionConfig: unknown fields {unknown}")
        if complete:
            check_fields(cls, d)
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)
