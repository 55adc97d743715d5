"""Conditional 1-D temporal U-Net (Chi et al., "Diffusion Policy", RSS 2023).

The action chunk (B, Tp, A) is treated as an A-channel signal over Tp time steps. Every residual
block is FiLM-conditioned (per-channel scale and bias) on `cat(step_embedding, obs_features)`.

Two entry points compute the same function:
- `forward(sample, timestep, global_cond)`: the training / reference path.
- `forward_film(sample, film)`: the inference path. Each block's FiLM input is
  `Mish(cat(step_emb, obs))`, and Mish is elementwise, so every FiLM linear splits into a
  timestep part and an observation part. `film_table()` computes both once per chunk for all
  denoising steps, and the per-step U-Net is then only convolutions, norms and activations.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SinusoidalPosEmb(nn.Module):
    """Transformer-style sinusoidal embedding of the integer diffusion step."""

    def __init__(self, dim: int):
        super().__init__()
        half = dim // 2
        scale = math.log(10000) / (half - 1)
        self.register_buffer("freqs", torch.exp(torch.arange(half) * -scale), persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = t.to(self.freqs.dtype)[:, None] * self.freqs[None, :]
        return torch.cat((args.sin(), args.cos()), dim=-1)


class Conv1dBlock(nn.Sequential):
    """Conv1d -> GroupNorm -> Mish."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, n_groups: int):
        super().__init__(
            nn.Conv1d(in_ch, out_ch, kernel_size, padding=kernel_size // 2),
            nn.GroupNorm(n_groups, out_ch),
            nn.Mish(),
        )


# GEMM convolution threshold: for batch 1 on CPU, aten's conv1d takes a slow im2col path whose
# (Cout x Cin*k) @ (Cin*k x L) product vectorises badly for L = 4..16; computing the transposed
# product (L x Cin*k) @ (Cin*k x Cout) is faster from 128 input channels up (2x at 256).
GEMM_CONV_MIN_CHANNELS = 128


def conv1d(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """`conv(x)` without the nn.Module call overhead; GEMM form for batch-1 CPU inference."""
    w = conv.weight
    if (x.shape[0] == 1 and x.device.type == "cpu" and not torch.is_grad_enabled()
            and conv.stride[0] == 1 and w.shape[1] >= GEMM_CONV_MIN_CHANNELS and w.shape[2] > 1):
        k, pad, length = w.shape[2], conv.padding[0], x.shape[2]
        cols = F.pad(x[0], (pad, pad)).unfold(1, k, 1).transpose(0, 1).reshape(length, -1)
        return torch.addmm(conv.bias, cols, w.view(w.shape[0], -1).t()).t().unsqueeze(0)
    return F.conv1d(x, w, conv.bias, conv.stride, conv.padding)


def conv_block(block: Conv1dBlock, x: torch.Tensor) -> torch.Tensor:
    conv, norm = block[0], block[1]
    return F.mish(F.group_norm(conv1d(conv, x), norm.num_groups, norm.weight, norm.bias, norm.eps))


class ConditionalResidualBlock1D(nn.Module):
    """Two conv blocks with FiLM (scale, bias) from the conditioning vector in between."""

    def __init__(self, in_ch: int, out_ch: int, cond_dim: int, kernel_size: int, n_groups: int):
        super().__init__()
        self.out_ch = out_ch
        self.blocks = nn.ModuleList([
            Conv1dBlock(in_ch, out_ch, kernel_size, n_groups),
            Conv1dBlock(out_ch, out_ch, kernel_size, n_groups),
        ])
        self.cond_encoder = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * out_ch))
        self.residual_conv = nn.Conv1d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.forward_film(x, self.cond_encoder(cond))

    def forward_film(self, x: torch.Tensor, film: torch.Tensor) -> torch.Tensor:
        """`film` is (B, 2*out_ch): the first half scales, the second half shifts."""
        n = self.out_ch
        out = torch.addcmul(film[:, n:, None], conv_block(self.blocks[0], x), film[:, :n, None])
        out = conv_block(self.blocks[1], out)
        res = self.residual_conv
        return out + (x if isinstance(res, nn.Identity) else F.conv1d(x, res.weight, res.bias))


class ConditionalUnet1D(nn.Module):
    """The Diffusion Policy U-Net; `down_dims` sets width and depth (Tp must halve cleanly)."""

    def __init__(
        self,
        input_dim: int,
        global_cond_dim: int,
        down_dims: tuple[int, ...] = (32, 64, 128),
        kernel_size: int = 5,
        n_groups: int = 8,
        step_embed_dim: int = 128,
    ):
        super().__init__()
        self.step_embed_dim = step_embed_dim
        self.diffusion_step_encoder = nn.Sequential(
            SinusoidalPosEmb(step_embed_dim),
            nn.Linear(step_embed_dim, step_embed_dim * 4),
            nn.Mish(),
            nn.Linear(step_embed_dim * 4, step_embed_dim),
        )
        cond_dim = step_embed_dim + global_cond_dim
        all_dims = [input_dim, *down_dims]
        in_out = list(zip(all_dims[:-1], all_dims[1:]))

        def block(i: int, o: int) -> ConditionalResidualBlock1D:
            return ConditionalResidualBlock1D(i, o, cond_dim, kernel_size, n_groups)

        self.down_modules = nn.ModuleList()
        for ind, (d_in, d_out) in enumerate(in_out):
            last = ind == len(in_out) - 1
            down = nn.Identity() if last else nn.Conv1d(d_out, d_out, 3, stride=2, padding=1)
            self.down_modules.append(nn.ModuleList([block(d_in, d_out), block(d_out, d_out), down]))
        mid = all_dims[-1]
        self.mid_modules = nn.ModuleList([block(mid, mid), block(mid, mid)])
        # As in the reference implementation, the up path consumes the skips of every level but
        # the first, so each level still upsamples back towards Tp.
        self.up_modules = nn.ModuleList()
        for d_in, d_out in reversed(in_out[1:]):
            up = nn.ConvTranspose1d(d_in, d_in, 4, stride=2, padding=1)
            self.up_modules.append(nn.ModuleList([block(d_out * 2, d_in), block(d_in, d_in), up]))
        start = down_dims[0]
        self.final_conv = nn.Sequential(
            Conv1dBlock(start, start, kernel_size, n_groups), nn.Conv1d(start, input_dim, 1)
        )
        # FiLM layout: one slice of the film vector per residual block, in call order.
        self.res_blocks = [m for m in self.modules() if isinstance(m, ConditionalResidualBlock1D)]
        self.film_sizes = [2 * b.out_ch for b in self.res_blocks]

    # -- training / reference path -------------------------------------------------------
    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, global_cond: torch.Tensor):
        """sample (B, Tp, A), timestep (B,) or scalar, global_cond (B, G) -> (B, Tp, A)."""
        if timestep.dim() == 0:
            timestep = timestep.expand(sample.shape[0])
        cond = torch.cat((self.diffusion_step_encoder(timestep), global_cond), dim=-1)
        films = [b.cond_encoder(cond) for b in self.res_blocks]
        return self._run(sample, films)

    # -- inference path ---------------------------------------------------------------------
    def film_table(self, timesteps: torch.Tensor, global_cond: torch.Tensor) -> torch.Tensor:
        """All blocks' FiLM vectors for every step: (S,) steps x (B, G) obs -> (S, B, sum film)."""
        d = self.step_embed_dim
        w, bias = self._film_weights()
        step = F.mish(self.diffusion_step_encoder(timesteps))
        film_t = F.linear(step, w[:, :d], bias)  # (S, F)
        film_o = F.linear(F.mish(global_cond), w[:, d:])  # (B, F)
        return film_t[:, None, :] + film_o[None, :, :]

    def _film_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All FiLM linears stacked (a ~2 MB copy at default size), rebuilt only when a weight
        changed: in-place updates bump `_version`, moves and casts change `data_ptr`."""
        params = [p for b in self.res_blocks for p in (b.cond_encoder[1].weight, b.cond_encoder[1].bias)]
        if torch.is_grad_enabled():  # differentiating through film_table: no cache
            return torch.cat(params[0::2], dim=0), torch.cat(params[1::2], dim=0)
        try:
            key = tuple((id(p), p._version, p.data_ptr()) for p in params)
        except RuntimeError:  # inference tensors have no version counter: no cache
            key = None
        if key is None or getattr(self, "_film_key", None) != key:
            self._film_cache = (torch.cat(params[0::2], dim=0), torch.cat(params[1::2], dim=0))
            self._film_key = key
        return self._film_cache

    def forward_film(self, sample: torch.Tensor, film: torch.Tensor) -> torch.Tensor:
        """One denoising step given this step's row of `film_table` (B, sum film)."""
        return self._run(sample, film.split(self.film_sizes, dim=-1))

    def _run(self, sample: torch.Tensor, films) -> torch.Tensor:
        x = sample.transpose(1, 2)
        films = iter(films)
        skips = []
        for res1, res2, down in self.down_modules:
            x = res1.forward_film(x, next(films))
            x = res2.forward_film(x, next(films))
            skips.append(x)
            if not isinstance(down, nn.Identity):
                x = F.conv1d(x, down.weight, down.bias, down.stride, down.padding)
        for res in self.mid_modules:
            x = res.forward_film(x, next(films))
        for res1, res2, up in self.up_modules:
            x = torch.cat((x, skips.pop()), dim=1)
            x = res1.forward_film(x, next(films))
            x = res2.forward_film(x, next(films))
            x = F.conv_transpose1d(x, up.weight, up.bias, up.stride, up.padding)
        out = self.final_conv[1]
        x = F.conv1d(conv_block(self.final_conv[0], x), out.weight, out.bias)
        return x.transpose(1, 2)
