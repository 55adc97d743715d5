"""Exponential moving average of a model's weights, with Diffusion Policy's warm-up schedule.

decay(step) = 1 - (1 + step / inv_gamma) ** -power, clamped to [min_decay, max_decay], so early
in training the average follows the model closely and later it smooths over ~1/(1-decay) steps.
The averaged copy is what gets evaluated and checkpointed.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, power: float = 0.75, inv_gamma: float = 1.0,
                 min_decay: float = 0.0, max_decay: float = 0.9999, update_after_step: int = 0):
        if hasattr(model, "clear_inference_cache"):
            model.clear_inference_cache()  # traced functions are not deep-copyable
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.power, self.inv_gamma = power, inv_gamma
        self.min_decay, self.max_decay = min_decay, max_decay
        self.update_after_step = update_after_step
        self.num_updates = 0
        self.decay = 0.0

    @classmethod
    def from_config(cls, model: nn.Module, config) -> EMA:
        return cls(model, config.ema_power, config.ema_inv_gamma, config.ema_min_decay,
                   config.ema_max_decay, config.ema_update_after_step)

    def get_decay(self, step: int) -> float:
        step = max(0, step - self.update_after_step - 1)
        if step <= 0:
            return 0.0
        value = 1 - (1 + step / self.inv_gamma) ** -self.power
        return max(self.min_decay, min(value, self.max_decay))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend `model`'s current weights into the average (call after each optimiser step)."""
        self.decay = self.get_decay(self.num_updates)
        for ema_p, p in zip(self.model.parameters(), model.parameters()):
            ema_p.lerp_(p.detach(), 1.0 - self.decay)
        for ema_b, b in zip(self.model.buffers(), model.buffers()):
            ema_b.copy_(b)
        self.num_updates += 1
