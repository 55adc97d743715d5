"""Normalizer: [-1, 1] from min/max, exact round trips, constant dimensions, JSON save/load."""

import json

import numpy as np
import pytest
import torch

from robot_rl.errors import DataError
from robot_rl.policies.diffusion.config import DiffusionConfig
from robot_rl.policies.diffusion.normalizer import Normalizer, normalizer_from_stats

SEEDS = [0, 1, 2]


def random_stats(rng, shape):
    lo = rng.uniform(-3, 1, shape)
    return {"min": lo.tolist(), "max": (lo + rng.uniform(0.5, 4, shape)).tolist()}


@pytest.mark.parametrize("seed", SEEDS)
def test_round_trip_and_range(seed):
    rng = np.random.default_rng(seed)
    stats = {"joint_pos": random_stats(rng, (8,)), "object_poses": random_stats(rng, (2, 7))}
    n = Normalizer(stats)
    for key, s in stats.items():
        lo, hi = torch.tensor(s["min"]), torch.tensor(s["max"])
        x = lo + (hi - lo) * torch.rand(100, *lo.shape, dtype=torch.float64)
        x = x.float()
        y = n.normalize(key, x)
        assert y.min() >= -1 - 1e-6 and y.max() <= 1 + 1e-6
        torch.testing.assert_close(n.normalize(key, lo.float()), -torch.ones_like(lo), atol=1e-6, rtol=0)
        torch.testing.assert_close(n.normalize(key, hi.float()), torch.ones_like(hi), atol=1e-6, rtol=0)
        torch.testing.assert_close(n.unnormalize(key, y), x, atol=1e-5, rtol=1e-6)


def test_constant_dimension_maps_to_zero_and_back():
    n = Normalizer({"action": {"min": [0.5, -1.0], "max": [0.5, 1.0]}})
    x = torch.tensor([[0.5, 0.25]])
    y = n.normalize("action", x)
    assert y[0, 0] == 0 and torch.isclose(y[0, 1], torch.tensor(0.25))
    torch.testing.assert_close(n.unnormalize("action", y), x)


def test_images_become_chw_floats_in_unit_range():
    img = torch.tensor(np.random.default_rng(0).integers(0, 256, (2, 5, 6, 3), dtype=np.uint8))
    out = Normalizer.normalize_image(img)
    assert out.shape == (2, 3, 5, 6) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    assert out[1, 2, 4, 5] == img[1, 4, 5, 2].item() / 255


def test_json_save_load_gives_identical_maps(tmp_path):
    rng = np.random.default_rng(0)
    n = Normalizer({"joint_pos": random_stats(rng, (8,)), "action": random_stats(rng, (8,))})
    n.save(tmp_path / "normalizer.json")
    m = Normalizer.load(tmp_path / "normalizer.json")
    x = torch.randn(4, 8)
    for key in ("joint_pos", "action"):
        assert torch.equal(m.normalize(key, x), n.normalize(key, x))
        assert torch.equal(m.unnormalize(key, x), n.unnormalize(key, x))
    assert json.loads((tmp_path / "normalizer.json").read_text())["stats"]["action"] == n.stats["action"]


@pytest.mark.parametrize("content", ["{not json", '{"stats": {"a": {"min": [0], "max": [-1]}}}', "[]"])
def test_bad_normalizer_file_is_a_one_line_data_error_naming_it(tmp_path, content):
    path = tmp_path / "normalizer.json"
    path.write_text(content)
    with pytest.raises(DataError, match="normalizer.json") as e:
        Normalizer.load(path)
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="missing.json"):
        Normalizer.load(tmp_path / "missing.json")


def test_from_dataset_stats_keeps_what_the_policy_reads():
    config = DiffusionConfig(obs_keys=("joint_pos", "front_rgb", "points"),
                             obs_shapes={"joint_pos": (8,), "front_rgb": (96, 96, 3), "points": (4, 6)})
    stats = {"joint_pos": {"min": [0] * 8, "max": [1] * 8, "mean": [0.5] * 8, "std": [0.1] * 8},
             "points": {"min": [[0] * 6, [-1] * 6, [0] * 6, [0] * 6], "max": [[1] * 6] * 4},
             "action": {"min": [-1] * 8, "max": [2] * 8},
             "front_rgb": {"min": [0, 0, 0], "max": [255, 255, 255]}}
    n = normalizer_from_stats(stats, config)
    assert sorted(n.keys()) == ["action", "joint_pos", "points"]
    assert n.stats["points"]["min"] == [-1] * 6  # per-point stats reduced to per feature
    with pytest.raises(DataError, match="action"):
        normalizer_from_stats({k: v for k, v in stats.items() if k != "action"}, config)
