"""compute_stats against numpy on known data, streamed in small blocks."""

import json

import numpy as np
import pytest

from robot_rl.data.dataset import EpisodeDataset
from robot_rl.data.stats import compute_stats
from robot_rl.errors import DataError

JOINTS = [f"joint{i}" for i in range(1, 8)] + ["finger_joint"]


@pytest.fixture
def episodes(tmp_path):
    rng = np.random.default_rng(3)
    ds = EpisodeDataset.create(tmp_path / "d", {"joint_names": JOINTS, "rate_hz": 10})
    raw = []
    for length in [5, 2, 9]:
        frames = {
            "joint_pos": (rng.normal(size=(length, 8)) * np.arange(1, 9) + 1000).astype(np.float32),
            "reward": rng.uniform(size=length).astype(np.float32),
            "front_rgb": rng.integers(0, 256, size=(length, 4, 5, 3), dtype=np.uint8),
            "front_depth": rng.uniform(0.5, 1.5, size=(length, 4, 5)).astype(np.float32),
            "points": rng.normal(size=(length, 6, 6)).astype(np.float32),
        }
        ds.append_episode(frames, {"task": "push", "success": False,
                                   "camera_intrinsics": {"front": (1, 1, 2, 2, 5, 4)}})
        raw.append(frames)
    return ds, {k: np.concatenate([f[k] for f in raw]).astype(np.float64) for k in raw[0]}


def test_hand_computed_values(tmp_path):
    ds = EpisodeDataset.create(tmp_path / "d", {"joint_names": ["a", "b"], "rate_hz": 5})
    ds.append_episode({"action": [[0, 10], [2, 10]]}, {"success": True})
    ds.append_episode({"action": [[4, 10], [6, 10]]}, {"success": True})
    stats = compute_stats(ds, ["action"], block_elements=2)  # one frame per block
    assert stats == {"action": {"min": [0.0, 10.0], "max": [6.0, 10.0], "mean": [3.0, 10.0],
                                "std": [np.sqrt(5.0), 0.0]}}


@pytest.mark.parametrize("block_elements", [7, 4_000_000])
def test_streamed_stats_equal_numpy(episodes, block_elements):
    ds, flat = episodes
    stats = compute_stats(ds, list(flat), block_elements=block_elements)
    json.dumps(stats)  # JSON-able as-is
    axes = {"joint_pos": (0,), "reward": (0,), "front_rgb": (0, 1, 2), "front_depth": (0, 1, 2), "points": (0, 1)}
    for key, array in flat.items():
        for name, fn in [("min", np.min), ("max", np.max), ("mean", np.mean), ("std", np.std)]:
            np.testing.assert_allclose(stats[key][name], fn(array, axis=axes[key]), rtol=1e-9, atol=1e-9,
                                       err_msg=f"{key} {name}")
    assert np.shape(stats["front_rgb"]["mean"]) == (3,) and np.shape(stats["points"]["std"]) == (6,)
    assert isinstance(stats["front_depth"]["mean"], float) and np.shape(stats["joint_pos"]["max"]) == (8,)


def test_unknown_key_or_no_episodes_is_a_data_error(episodes):
    ds, _ = episodes
    with pytest.raises(DataError, match="no key 'nope'"):
        compute_stats(ds, ["nope"])
    with pytest.raises(DataError, match="no episodes"):
        compute_stats(ds, ["reward"], episodes=[])
