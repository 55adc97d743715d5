"""DiffusionPolicy: the nn.Module (encoders + U-Net + noise schedules) and the policy object.

Training: `compute_loss(batch)` is DDPM epsilon-prediction on normalized action chunks.
Inference: `generate(obs)` runs DDIM with the plain diffusers arithmetic but a lean loop:
- observations are encoded once per chunk, and `sample_chunks` encodes the history once for
  all n samples;
- every FiLM vector of every denoising step is computed up front (`ConditionalUnet1D.film_table`);
- DDIM coefficients are precomputed per step count;
- one call per step does the U-Net and the DDIM update; on CPU that call is a torch.jit trace
  (about 1.5x faster than eager at batch 1: no Python between the ~170 ops of a step), checked
  against eager when built and replaced by eager if tracing fails or disagrees.
`generate_reference` is the textbook loop over diffusers' DDIMScheduler.step; tests hold the
fast path to it.

The policy protocol: `reset(seed)`, `act(obs)` (obs history of To + receding horizon of Ta
actions), `predict_chunk(history)`, `sample_chunks(history, n)`, and for steering
`observe(obs)` + `sample_executable(history, n)`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import warnings
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn

from robot_rl.errors import ConfigError, DataError
from robot_rl.policies import checkpoint
from robot_rl.policies.diffusion.config import DiffusionConfig, is_rgb_key
from robot_rl.policies.diffusion.ema import EMA  # noqa: F401  (re-exported for trainers)
from robot_rl.policies.diffusion.encoders import ObservationEncoder
from robot_rl.policies.diffusion.normalizer import Normalizer
from robot_rl.policies.diffusion.unet import ConditionalUnet1D
from robot_rl.runtime.chunk_executor import ChunkExecutor

log = logging.getLogger(__name__)

_MAX_TRACES = 8  # traced step functions kept (one per batch size and device)


def _scheduler_kwargs(config: DiffusionConfig) -> dict:
    return dict(
        num_train_timesteps=config.num_train_timesteps,
        beta_schedule=config.beta_schedule,
        beta_start=config.beta_start,
        beta_end=config.beta_end,
        clip_sample=config.clip_sample,
        clip_sample_range=config.clip_sample_range,
        prediction_type=config.prediction_type,
    )


def make_train_scheduler(config: DiffusionConfig) -> DDPMScheduler:
    return DDPMScheduler(**_scheduler_kwargs(config), variance_type="fixed_small")


def make_inference_scheduler(config: DiffusionConfig, num_inference_steps: int | None = None) -> DDIMScheduler:
    s = DDIMScheduler(**_scheduler_kwargs(config), set_alpha_to_one=True, steps_offset=0,
                      timestep_spacing=config.timestep_spacing)
    s.set_timesteps(num_inference_steps or config.num_inference_steps)
    return s


@dataclass
class DenoisePlan:
    """DDIM (eta = 0) for one step count: the timesteps and, per step, the four coefficients
    [sqrt(a_t), sqrt(1 - a_t), sqrt(a_prev), sqrt(1 - a_prev)] computed exactly as
    DDIMScheduler.step computes them, so the update below is bit-identical to it."""

    timesteps: torch.Tensor  # (S,) int64
    coefs: torch.Tensor  # (S, 4) float32

    @classmethod
    def build(cls, config: DiffusionConfig, num_inference_steps: int, device) -> DenoisePlan:
        s = make_inference_scheduler(config, num_inference_steps)
        rows = []
        for t in s.timesteps.tolist():
            prev = t - s.config.num_train_timesteps // s.num_inference_steps
            a_t = s.alphas_cumprod[t]
            a_prev = s.alphas_cumprod[prev] if prev >= 0 else s.final_alpha_cumprod
            rows.append(torch.stack([a_t**0.5, (1 - a_t) ** 0.5, a_prev**0.5, (1 - a_prev) ** 0.5]))
        return cls(s.timesteps.to(device), torch.stack(rows).to(device))


def ddim_update(x: torch.Tensor, out: torch.Tensor, coef: torch.Tensor, epsilon: bool = True,
                clip_range: float | None = 1.0) -> torch.Tensor:
    """x_t -> x_prev for model output `out`: DDIMScheduler.step with eta = 0, same operation order."""
    sqrt_a, sqrt_b, sqrt_a_prev, direction = coef.unbind()
    if epsilon:
        x0, eps = (x - sqrt_b * out) / sqrt_a, out
    else:
        x0, eps = out, (x - sqrt_a * out) / sqrt_b
    if clip_range is not None:
        x0 = x0.clamp(-clip_range, clip_range)
    return sqrt_a_prev * x0 + direction * eps


class DenoiseStep(nn.Module):
    """One DDIM step: U-Net on this step's FiLM row, then the eta = 0 update with clipping."""

    def __init__(self, unet: ConditionalUnet1D, prediction_type: str, clip_sample: bool, clip_range: float):
        super().__init__()
        self.unet = unet
        self.epsilon = prediction_type == "epsilon"
        self.clip_range = clip_range if clip_sample else None

    def forward(self, x: torch.Tensor, film: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
        return ddim_update(x, self.unet.forward_film(x, film), coef, self.epsilon, self.clip_range)


class DiffusionPolicy(nn.Module):
    def __init__(self, config: DiffusionConfig, normalizer: Normalizer | None = None, robot=None):
        super().__init__()
        self.config = config
        needed = {k: config.obs_shapes[k] for k in config.lowdim_keys}
        needed.update({k: (config.obs_shapes[k][-1],) for k in config.points_keys})
        needed["action"] = (config.action_dim,)
        if normalizer is None:
            normalizer = Normalizer.identity(needed)
        missing = [k for k in needed if k not in normalizer]
        if missing:
            raise ConfigError(f"normalizer has no statistics for {missing}")
        wrong = {k: tuple(normalizer.center[k].shape) for k, shape in needed.items()
                 if tuple(normalizer.center[k].shape) not in (tuple(shape), ())}
        if wrong:
            raise ConfigError(f"normalizer statistics have shapes {wrong}, the config's observations and actions "
                              f"{ {k: tuple(needed[k]) for k in wrong} }")
        self.normalizer = normalizer
        self.obs_encoder = ObservationEncoder(config)
        self.unet = ConditionalUnet1D(
            input_dim=config.action_dim,
            global_cond_dim=self.obs_encoder.out_dim,
            down_dims=config.down_dims,
            kernel_size=config.kernel_size,
            n_groups=config.n_groups,
            step_embed_dim=config.step_embed_dim,
        )
        self.noise_scheduler = make_train_scheduler(config)
        self.robot = robot  # robot_rl.robot.RobotModel it acts for, saved as robot.json; None: unknown
        self._plans: dict = {}  # (steps, device) -> DenoisePlan
        self._steps: dict = {}  # (batch, device) -> step callable (traced or eager)
        self.reset()

    # --- bookkeeping -----------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _apply(self, fn, recurse=True):
        # .to() / .cuda() / .float(): move the normalizer along and drop device-bound caches.
        super()._apply(fn, recurse)
        self.normalizer.center = {k: fn(v) for k, v in self.normalizer.center.items()}
        self.normalizer.half_range = {k: fn(v) for k, v in self.normalizer.half_range.items()}
        self.clear_inference_cache()
        return self

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self.clear_inference_cache()
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def clear_inference_cache(self) -> None:
        self._plans.clear()
        self._steps.clear()

    # --- observations ------------------------------------------------------------------------------
    def normalize_obs(self, obs: Mapping[str, torch.Tensor], keys=None) -> dict[str, torch.Tensor]:
        """{key: (B, To, ...)} raw -> normalized on this module's device (images to CHW [0, 1]);
        `keys`: these of the policy's observation keys only."""
        device, out = self.device, {}
        for key in self.config.obs_keys if keys is None else keys:
            x = torch.as_tensor(obs[key], device=device)
            if is_rgb_key(key):
                out[key] = Normalizer.normalize_image(x)
            else:
                out[key] = self.normalizer.normalize(key, x.float())
        return out

    def encode_obs(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Raw {key: (B, To, ...)} -> conditioning (B, global_cond_dim)."""
        return self.obs_encoder(self.normalize_obs(obs))

    @torch.inference_mode()
    def scene_features(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """What the encoder makes of an observation's cameras (its rgb and points keys), flat
        float32 (F,), or (B, F) for a batch of frames: the `base_features` of a residual or critic
        on this base (policies/base_view.py). Evaluation mode (centre crop): a frame always gives
        the same features."""
        keys = (*self.config.rgb_keys, *self.config.points_keys)
        if not keys:
            raise ConfigError("this policy reads no camera: it has no scene features")
        try:
            raw = {k: np.asarray(obs[k]) for k in keys}
        except KeyError as e:
            raise ConfigError(f"observation has no {e.args[0]!r}; the base's scene features read {list(keys)}") from None
        batched = raw[keys[0]].ndim == len(self.config.obs_shapes[keys[0]]) + 1
        nobs = self.normalize_obs({k: torch.as_tensor(v if batched else v[None])[:, None] for k, v in raw.items()}, keys)
        encoder, training = self.obs_encoder, self.obs_encoder.training
        encoder.eval()
        try:
            parts = [encoder.rgb[k](nobs[k][:, 0]) for k in self.config.rgb_keys]
            parts += [encoder.points[k](nobs[k][:, 0, :, : encoder.points_channels]) for k in self.config.points_keys]
        finally:
            encoder.train(training)
        out = torch.cat(parts, -1).float().cpu().numpy()
        return out if batched else out[0]

    # --- training ----------------------------------------------------------------------------------
    def compute_loss(self, batch, noise: torch.Tensor | None = None, timesteps: torch.Tensor | None = None) -> torch.Tensor:
        """DDPM loss on a batch: (obs {key: (B, To, ...)}, action (B, Tp, A)) or a dict with "action";
        `noise` (B, Tp, A) and `timesteps` (B,) given by a trainer that draws them itself (drawn here otherwise)."""
        if isinstance(batch, Mapping):
            obs, action = batch, batch["action"]
        else:
            obs, action = batch
        cond = self.encode_obs(obs)
        naction = self.normalizer.normalize("action", torch.as_tensor(action, device=self.device).float())
        noise = torch.randn_like(naction) if noise is None else noise.to(naction.device)
        t = (torch.randint(0, self.config.num_train_timesteps, (naction.shape[0],), device=naction.device)
             if timesteps is None else timesteps.to(naction.device))
        noisy = self.noise_scheduler.add_noise(naction, noise, t)
        pred = self.unet(noisy, t, cond)
        target = noise if self.config.prediction_type == "epsilon" else naction
        return F.mse_loss(pred, target)

    # --- inference: the fast path ------------------------------------------------------------------
    def _plan(self, steps: int) -> DenoisePlan:
        key = (steps, str(self.device))
        if key not in self._plans:
            self._plans[key] = DenoisePlan.build(self.config, steps, self.device)
        return self._plans[key]

    def _step_fn(self, batch: int, plan: DenoisePlan):
        key = (batch, str(self.device))
        fn = self._steps.get(key)
        if fn is None:
            c = self.config
            eager = DenoiseStep(self.unet, c.prediction_type, c.clip_sample, c.clip_sample_range)
            use_trace = c.inference_backend == "trace" or (c.inference_backend == "auto" and self.device.type == "cpu")
            fn = self._trace(eager, batch, plan) if use_trace else eager
            if len(self._steps) >= _MAX_TRACES:
                self._steps.clear()
            self._steps[key] = fn
        return fn

    def _trace(self, eager: DenoiseStep, batch: int, plan: DenoisePlan):
        """torch.jit.trace of one step, verified against eager; eager if anything goes wrong."""
        g = torch.Generator(device="cpu").manual_seed(0)
        x = torch.randn(batch, self.config.pred_horizon, self.config.action_dim, generator=g).to(self.device)
        film = (0.1 * torch.randn(batch, sum(self.unet.film_sizes), generator=g)).to(self.device)
        coef = plan.coefs[len(plan.coefs) // 2]
        try:
            with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
                warnings.simplefilter("ignore")  # TracerWarning / DeprecationWarning of torch.jit
                traced = torch.jit.trace(eager, (x, film, coef), check_trace=False)
                for _ in range(3):  # the profiling executor optimises after a few runs
                    got = traced(x, film, coef)
                want = eager(x, film, coef)
            if not torch.allclose(got, want, rtol=1e-4, atol=1e-5):
                raise RuntimeError(f"traced step differs from eager by {(got - want).abs().max().item():.2e}")
            return traced
        except Exception as e:  # any tracing failure means: run eager, never fail inference
            log.warning("diffusion policy: torch.jit.trace unavailable (%s); using eager inference", e)
            return eager

    @contextlib.contextmanager
    def _inference_threads(self):
        n = self.config.inference_threads
        before = torch.get_num_threads()
        if n <= 0 or n == before:
            yield
            return
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def denoise(self, cond: torch.Tensor, noise: torch.Tensor, num_inference_steps: int | None = None) -> torch.Tensor:
        """DDIM from `noise` (B, Tp, A) given conditioning (B, G) -> normalized chunk (B, Tp, A)."""
        plan = self._plan(num_inference_steps or self.config.num_inference_steps)
        film = self.unet.film_table(plan.timesteps, cond)  # (S, B, F)
        step = self._step_fn(noise.shape[0], plan)
        x = noise
        for i in range(len(plan.timesteps)):
            x = step(x, film[i], plan.coefs[i])
        return x

    def _noise(self, n: int, generator: torch.Generator | None, scale: float | None = None) -> torch.Tensor:
        # Noise is drawn on the CPU so a seed gives the same chunks on any device.
        shape = (n, self.config.pred_horizon, self.config.action_dim)
        scale = self.config.noise_scale if scale is None else scale
        return (scale * torch.randn(shape, generator=generator)).to(self.device)

    @torch.inference_mode()
    def generate(self, obs: Mapping[str, torch.Tensor], noise: torch.Tensor | None = None,
                 generator: torch.Generator | None = None, num_inference_steps: int | None = None) -> torch.Tensor:
        """Batched: raw obs {key: (B, To, ...)} -> action chunks (B, Tp, A) in action units."""
        with self._inference_threads():
            cond = self.encode_obs(obs)
            if noise is None:
                noise = self._noise(cond.shape[0], generator)
            x = self.denoise(cond, noise.to(self.device), num_inference_steps)
            return self.normalizer.unnormalize("action", x)

    @torch.inference_mode()
    def generate_reference(self, obs: Mapping[str, torch.Tensor], noise: torch.Tensor,
                           num_inference_steps: int | None = None) -> torch.Tensor:
        """The plain diffusers loop (U-Net `forward` + DDIMScheduler.step), for checking `generate`."""
        scheduler = make_inference_scheduler(self.config, num_inference_steps)
        cond = self.encode_obs(obs)
        x = noise.to(self.device)
        for t in scheduler.timesteps:
            out = self.unet(x, t.to(self.device), cond)
            x = scheduler.step(out, t, x).prev_sample
        return self.normalizer.unnormalize("action", x)

    # --- policy object -------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> None:
        """Start an episode: empty the observation history, drop the current chunk, seed the noise."""
        self._history: deque = deque(maxlen=self.config.obs_horizon)
        # receding horizon as the nodes run it (runtime/chunk_executor.py), in ticks: a chunk is
        # requested every Ta steps and computed at once (a lock-step simulator waits for it)
        self._executor = ChunkExecutor(1.0, self.config.action_horizon)
        self._tick = -1
        self._index = -1  # of the action last returned from the current chunk
        self._generator = torch.Generator(device="cpu")
        self._generator.manual_seed(random.SystemRandom().randrange(2**63) if seed is None else int(seed))

    def observe(self, obs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Add one observation; return the history {key: (To, ...)} (the first one repeated at start)."""
        try:
            frame = {k: np.array(obs[k]) for k in self.config.obs_keys}
        except KeyError as e:
            raise ConfigError(f"observation has no {e.args[0]!r}; "
                              f"this policy reads {list(self.config.obs_keys)}") from None
        if not self._history:
            self._history.extend([frame] * (self.config.obs_horizon - 1))
        self._history.append(frame)
        return {k: np.stack([f[k] for f in self._history]) for k in self.config.obs_keys}

    def act(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Next action (A,): a new chunk every Ta steps, executed from the current observation on."""
        history = self.observe(obs)
        self._tick += 1
        t = float(self._tick)
        tick = self._executor.tick(t)
        action, index = tick.action, tick.index
        if tick.request:
            chunk = self.executable(self.predict_chunk(history))
            delivered = self._executor.deliver(t, chunk, self._executor.generation)
            if action is None:
                action, index = delivered.action, delivered.index
        self._index = index
        return action

    @property
    def current_chunk(self) -> tuple[np.ndarray, int] | None:
        """(the current chunk's executable actions, the index of the one `act` returned last): where
        the base is heading, for a residual's chunk features (policies/chunk_context.py)."""
        chunk = self._executor.chunk_actions
        return None if chunk is None else (chunk, self._index)

    def executable(self, chunk: np.ndarray) -> np.ndarray:
        """The Ta actions of a chunk (..., Tp, A) that start at the latest observation."""
        start = self.config.obs_horizon - 1
        return chunk[..., start : start + self.config.action_horizon, :]

    def _history_batch(self, obs_history) -> dict[str, torch.Tensor]:
        """History as {key: (To, ...)} or a list of obs dicts -> {key: (1, To, ...)} tensors."""
        to = self.config.obs_horizon
        if not isinstance(obs_history, Mapping):
            frames = list(obs_history)
            obs_history = {k: np.stack([np.asarray(f[k]) for f in frames]) for k in self.config.obs_keys}
        batch = {}
        for key in self.config.obs_keys:
            x = torch.as_tensor(np.asarray(obs_history[key]))
            expected = len(self.config.obs_shapes[key])
            if x.dim() == expected:  # a single observation
                x = x[None]
            if x.dim() != expected + 1 or x.shape[0] < 1:
                raise ConfigError(f"history of {key!r} must be (T, *{self.config.obs_shapes[key]}), "
                                  f"got {tuple(x.shape)}")
            if x.shape[0] < to:
                x = torch.cat([x[:1].expand(to - x.shape[0], *x.shape[1:]), x])
            batch[key] = x[-to:][None]
        return batch

    def predict_chunk(self, obs_history, generator: torch.Generator | None = None,
                      num_inference_steps: int | None = None) -> np.ndarray:
        """One action chunk (Tp, A) for an observation history."""
        return self.sample_chunks(obs_history, 1, generator, num_inference_steps)[0]

    def sample_chunks(self, obs_history, n: int, generator: torch.Generator | None = None,
                      num_inference_steps: int | None = None, noise_scale: float | None = None) -> np.ndarray:
        """n chunks (n, Tp, A) for one history: encoded once, denoised as one batch of n.
        Noise comes from `generator`, else from the policy's own (seeded by `reset(seed)`), scaled
        by `noise_scale` (None: the config's)."""
        if n < 1:
            raise ConfigError(f"sample_chunks needs n >= 1, got {n}")
        with torch.inference_mode(), self._inference_threads():
            cond = self.encode_obs(self._history_batch(obs_history))
            noise = self._noise(n, generator or self._generator, noise_scale)
            x = self.denoise(cond.expand(n, -1), noise, num_inference_steps)
            return self.normalizer.unnormalize("action", x).cpu().numpy()

    def warmup(self, batch_sizes=(1,)) -> None:
        """Build the DDIM plan and the traced step for these batch sizes now (~0.5 s each on CPU),
        so the first real chunk after loading is not slow: call before swapping a model in."""
        zeros = {k: np.zeros((self.config.obs_horizon, *self.config.obs_shapes[k]),
                             np.uint8 if is_rgb_key(k) else np.float32) for k in self.config.obs_keys}
        for n in batch_sizes:
            self.sample_chunks(zeros, n, torch.Generator().manual_seed(0))

    def sample_executable(self, obs_history, n: int, generator: torch.Generator | None = None,
                          noise_scale: float | None = None) -> np.ndarray:
        """n candidate executable action sequences (n, Ta, A) for steering."""
        return self.executable(self.sample_chunks(obs_history, n, generator, noise_scale=noise_scale))

    # --- checkpoints -------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> DiffusionPolicy:
        """The only loader (policies/checkpoint.py): safetensors + JSON, never unpickles; tensors
        are mapped to `device`; `robot` is the robot it was trained on (None if not recorded)."""
        ckpt = checkpoint.load(path, "diffusion", device)
        config_path, norm_path, weights_path = (ckpt.path / n for n in (checkpoint.CONFIG, checkpoint.NORMALIZER,
                                                                         checkpoint.WEIGHTS))
        try:
            config = DiffusionConfig.from_dict(ckpt.config, complete=True)
        except (ConfigError, TypeError, ValueError) as e:
            raise DataError(f"{config_path}: invalid config ({e})") from None
        try:
            normalizer = Normalizer.from_dict(ckpt.normalizer)
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{norm_path}: not a normalizer file ({type(e).__name__}: {e})") from None
        try:
            policy = cls(config, normalizer)
        except ConfigError as e:
            raise DataError(f"{norm_path}: {e}") from None
        policy.to(checkpoint.torch_device(device))
        expected, state = policy.state_dict(), ckpt.tensors
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
        if missing or unexpected or wrong:
            raise DataError(f"{weights_path}: weights do not match {checkpoint.CONFIG} "
                            f"(missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]})")
        policy.load_state_dict(state)
        policy.robot = ckpt.robot
        if ckpt.robot is not None and config.joint_names and not set(config.joint_names) <= set(ckpt.robot.joint_names):
            raise DataError(f"{config_path}: joint_names {list(config.joint_names)} are not joints of its robot "
                            f"{ckpt.robot.name!r} {list(ckpt.robot.joint_names)}")
        return policy.eval()

    def save_checkpoint(self, path: str | os.PathLike, extra_files: Mapping[str, bytes] | None = None) -> None:
        """Write the current weights (pass the EMA copy) with config, normalizer and robot."""
        checkpoint.save(path, self.state_dict(), self.config.to_dict(), self.normalizer.to_dict(),
                        self.robot, extra_files)
