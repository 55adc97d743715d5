"""Observation encoders: normalized observations (B, To, ...) -> one conditioning vector per sample.

- low-dim: the normalized state vector as is (identity) or through a small MLP;
- RGB: one ResNet-18-style trunk per camera, GroupNorm instead of BatchNorm (batch statistics
  and EMA weights do not mix, Chi et al. sec. 3.3), spatial-softmax keypoints instead of global
  pooling; random crop in training, centre crop in eval;
- point clouds: DP3-style PointNet (shared per-point MLP with LayerNorm, max pool, projection).

Encoding happens once per chunk, never per denoising step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robot_rl.policies.diffusion.config import DiffusionConfig


# --- image helpers --------------------------------------------------------------------------------
def center_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    h, w = x.shape[-2:]
    top, left = (h - size[0]) // 2, (w - size[1]) // 2
    return x[..., top : top + size[0], left : left + size[1]]


def random_crop(x: torch.Tensor, size: tuple[int, int], generator: torch.Generator | None = None) -> torch.Tensor:
    """An independent random crop of each image of (N, C, H, W), in one gather."""
    n, _, h, w = x.shape
    top = torch.randint(0, h - size[0] + 1, (n, 1, 1), device=x.device, generator=generator)
    left = torch.randint(0, w - size[1] + 1, (n, 1, 1), device=x.device, generator=generator)
    rows = top + torch.arange(size[0], device=x.device)[None, :, None]
    cols = left + torch.arange(size[1], device=x.device)[None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None]
    return x.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


# --- RGB ------------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    """ResNet basic block with GroupNorm."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, group_size: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.norm1 = nn.GroupNorm(out_ch // group_size, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.norm2 = nn.GroupNorm(out_ch // group_size, out_ch)
        self.shortcut = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.GroupNorm(out_ch // group_size, out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class SpatialSoftmax(nn.Module):
    """Feature map -> `num_kp` expected (x, y) keypoint positions in [-1, 1] (Levine et al. 2016)."""

    def __init__(self, in_ch: int, height: int, width: int, num_kp: int):
        super().__init__()
        self.keypoints = nn.Conv2d(in_ch, num_kp, 1)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        self.register_buffer("grid", torch.stack((xs.reshape(-1), ys.reshape(-1)), dim=1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attention = self.keypoints(x).flatten(2).softmax(dim=-1)  # (N, K, H*W)
        return (attention @ self.grid).flatten(1)  # (N, 2K)


class RgbEncoder(nn.Module):
    """One camera: (N, 3, H, W) in [0, 1] -> (N, rgb_feature_dim)."""

    def __init__(self, config: DiffusionConfig, image_hw: tuple[int, int]):
        super().__init__()
        self.crop_shape = config.crop_shape
        self.crop_is_random = config.crop_is_random
        widths, g = config.rgb_widths, config.rgb_group_size
        layers: list[nn.Module] = [
            nn.Conv2d(3, widths[0], 7, 2, 3, bias=False),
            nn.GroupNorm(widths[0] // g, widths[0]),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
        ]
        in_ch = widths[0]
        for i, w in enumerate(widths):
            for j in range(config.rgb_blocks_per_stage):
                layers.append(BasicBlock(in_ch, w, 2 if (i > 0 and j == 0) else 1, g))
                in_ch = w
        self.trunk = nn.Sequential(*layers)
        h, w = self.crop_shape or image_hw
        with torch.no_grad():
            fh, fw = self.trunk(torch.zeros(1, 3, h, w)).shape[-2:]
        self.pool = SpatialSoftmax(in_ch, fh, fw, config.spatial_softmax_num_kp)
        self.out = nn.Linear(2 * config.spatial_softmax_num_kp, config.rgb_feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.crop_shape is not None:
            if self.training and self.crop_is_random:
                x = random_crop(x, self.crop_shape)
            else:
                x = center_crop(x, self.crop_shape)
        return F.relu(self.out(self.pool(self.trunk(x))))


# --- point clouds ---------------------------------------------------------------------------------
class PointNetEncoder(nn.Module):
    """DP3 encoder: (N, P, C) points -> per-point MLP (Linear, LayerNorm, ReLU) -> max -> projection."""

    def __init__(self, in_dim: int, dims: tuple[int, ...], out_dim: int):
        super().__init__()
        layers: list[nn.Module] = []
        for d in dims:
            layers += [nn.Linear(in_dim, d), nn.LayerNorm(d), nn.ReLU()]
            in_dim = d
        self.mlp = nn.Sequential(*layers)
        self.projection = nn.Sequential(nn.Linear(in_dim, out_dim), nn.LayerNorm(out_dim))

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.projection(self.mlp(points).amax(dim=-2))


# --- everything together ------------------------------------------------------------------------
class ObservationEncoder(nn.Module):
    """{key: (B, To, ...)} normalized -> (B, To * step_dim): low-dim, then cameras, then points."""

    def __init__(self, config: DiffusionConfig):
        super().__init__()
        self.lowdim_keys = config.lowdim_keys
        self.rgb_keys = config.rgb_keys
        self.points_keys = config.points_keys
        self.points_channels = 6 if config.points_use_rgb else 3
        lowdim_dim = sum(int(torch.Size(config.obs_shapes[k]).numel()) for k in self.lowdim_keys)
        step_dim = 0
        self.lowdim = nn.Identity()
        if self.lowdim_keys:
            if config.lowdim_encoder == "mlp":
                layers: list[nn.Module] = []
                d = lowdim_dim
                for i, h in enumerate(config.lowdim_mlp_dims):
                    layers.append(nn.Linear(d, h))
                    if i < len(config.lowdim_mlp_dims) - 1:
                        layers.append(nn.Mish())
                    d = h
                self.lowdim = nn.Sequential(*layers)
                lowdim_dim = d
            step_dim += lowdim_dim
        self.rgb = nn.ModuleDict({
            k: RgbEncoder(config, config.obs_shapes[k][:2]) for k in self.rgb_keys
        })
        step_dim += config.rgb_feature_dim * len(self.rgb_keys)
        self.points = nn.ModuleDict({
            k: PointNetEncoder(self.points_channels, config.pointnet_dims, config.points_feature_dim)
            for k in self.points_keys
        })
        step_dim += config.points_feature_dim * len(self.points_keys)
        self.step_dim = step_dim
        self.out_dim = step_dim * config.obs_horizon

    def forward(self, nobs: dict[str, torch.Tensor]) -> torch.Tensor:
        features = []
        if self.lowdim_keys:
            b, t = nobs[self.lowdim_keys[0]].shape[:2]
            state = torch.cat([nobs[k].reshape(b, t, -1) for k in self.lowdim_keys], dim=-1)
            features.append(self.lowdim(state))
        for key, encoder in self.rgb.items():
            images = nobs[key]  # (B, To, 3, H, W)
            b, t = images.shape[:2]
            features.append(encoder(images.flatten(0, 1)).view(b, t, -1))
        for key, encoder in self.points.items():
            points = nobs[key][..., : self.points_channels]  # (B, To, P, C)
            b, t = points.shape[:2]
            features.append(encoder(points.flatten(0, 1)).view(b, t, -1))
        return torch.cat(features, dim=-1).flatten(1)
