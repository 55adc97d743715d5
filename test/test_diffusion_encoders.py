"""Observation encoders: output shapes, crops, PointNet's order invariance, whole-policy wiring."""

import numpy as np
import pytest
import torch

from robot_rl.policies.diffusion.config import DiffusionConfig
from robot_rl.policies.diffusion.encoders import (ObservationEncoder, PointNetEncoder, RgbEncoder,
                                                  center_crop, random_crop)
from robot_rl.policies.diffusion.model import DiffusionPolicy


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # small models: one intra-op thread


def rgb_points_config(**kw) -> DiffusionConfig:
    shapes = {"joint_pos": (8,), "front_rgb": (96, 96, 3), "wrist_rgb": (96, 96, 3), "points": (512, 6)}
    return DiffusionConfig(obs_keys=tuple(shapes), obs_shapes=shapes, down_dims=(16, 32, 64), n_groups=4,
                           step_embed_dim=16, rgb_widths=(16, 32, 32, 64), **kw)


def test_random_crop_takes_a_window_of_each_image_and_center_crop_is_centred():
    x = torch.arange(2 * 3 * 10 * 12, dtype=torch.float32).view(2, 3, 10, 12)
    crops = random_crop(x, (6, 7))
    assert crops.shape == (2, 3, 6, 7)
    for img, crop in zip(x, crops):
        top = int((crop[0, 0, 0] - img[0, 0, 0]) // 12)
        left = int((crop[0, 0, 0] - img[0, 0, 0]) % 12)
        assert torch.equal(crop, img[:, top : top + 6, left : left + 7])
    assert torch.equal(center_crop(x, (6, 8)), x[..., 2:8, 2:10])


def test_rgb_encoder_shape_random_crop_in_training_center_crop_in_eval():
    config = rgb_points_config()
    enc = RgbEncoder(config, (96, 96))
    x = torch.rand(4, 3, 96, 96)
    assert enc.eval()(x).shape == (4, config.rgb_feature_dim)
    assert torch.equal(enc(x), enc(x))  # centre crop: deterministic
    torch.manual_seed(0)
    a = enc.train()(x)
    b = enc(x)
    assert not torch.equal(a, b)  # different random crops
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in enc.modules())
    assert any(isinstance(m, torch.nn.GroupNorm) for m in enc.modules())


def test_pointnet_is_invariant_to_point_order():
    enc = PointNetEncoder(3, (64, 128, 256), 64).eval()
    pts = torch.randn(2, 512, 3)
    out = enc(pts)
    assert out.shape == (2, 64)
    torch.testing.assert_close(enc(pts[:, torch.randperm(512)]), out)


def test_observation_encoder_output_is_one_vector_per_sample():
    config = rgb_points_config()
    enc = ObservationEncoder(config).eval()
    assert len(enc.rgb) == 2  # one trunk per camera
    step_dim = 8 + 2 * config.rgb_feature_dim + config.points_feature_dim
    assert enc.step_dim == step_dim and enc.out_dim == 2 * step_dim
    nobs = {"joint_pos": torch.rand(3, 2, 8), "front_rgb": torch.rand(3, 2, 3, 96, 96),
            "wrist_rgb": torch.rand(3, 2, 3, 96, 96), "points": torch.rand(3, 2, 512, 6)}
    assert enc(nobs).shape == (3, 2 * step_dim)


def test_lowdim_mlp_encoder_sets_the_feature_size():
    config = DiffusionConfig(lowdim_encoder="mlp", lowdim_mlp_dims=(64, 32))
    enc = ObservationEncoder(config)
    assert enc.out_dim == 2 * 32
    nobs = {"joint_pos": torch.rand(5, 2, 8), "ee_pos": torch.rand(5, 2, 3), "object_poses": torch.rand(5, 2, 2, 7)}
    assert enc(nobs).shape == (5, 64)


def test_policy_with_cameras_and_points_samples_chunks_from_raw_observations():
    config = rgb_points_config(points_use_rgb=True)
    policy = DiffusionPolicy(config).eval()
    rng = np.random.default_rng(0)
    hist = {"joint_pos": rng.uniform(-1, 1, (2, 8)).astype(np.float32),
            "front_rgb": rng.integers(0, 256, (2, 96, 96, 3), dtype=np.uint8),
            "wrist_rgb": rng.integers(0, 256, (2, 96, 96, 3), dtype=np.uint8),
            "points": rng.uniform(-1, 1, (2, 512, 6)).astype(np.float32)}
    chunks = policy.sample_chunks(hist, 4)
    assert chunks.shape == (4, 16, 8) and np.isfinite(chunks).all()
    batch = {k: torch.as_tensor(np.stack([v] * 3)) for k, v in hist.items()}
    loss = policy.train().compute_loss((batch, torch.rand(3, 16, 8)))
    assert torch.isfinite(loss)
