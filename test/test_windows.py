"""ChunkWindows on a hand-built dataset whose values say where they came from."""

import numpy as np
import pytest
import torch

from robot_rl.data.dataset import EpisodeDataset
from robot_rl.data.windows import ChunkWindows

JOINTS = [f"joint{i}" for i in range(1, 8)] + ["finger_joint"]


@pytest.fixture
def dataset(tmp_path):
    """Episode e (lengths 3, 4): joint_pos[t] = 100 e + t, action[t] = 100 e + t + 0.5, and a
    1x1 uint8 image holding 10 e + t."""
    ds = EpisodeDataset.create(tmp_path / "d", {"joint_names": JOINTS, "rate_hz": 10})
    for e, length in enumerate([3, 4]):
        t = np.arange(length, dtype=np.float32)[:, None]
        ds.append_episode({
            "joint_pos": np.repeat(100 * e + t, 8, axis=1),
            "action": np.repeat(100 * e + t + 0.5, 8, axis=1),
            "front_rgb": np.broadcast_to((10 * e + t).astype(np.uint8)[:, :, None, None], (length, 1, 1, 3)),
        }, {"task": "push", "success": True, "camera_intrinsics": {"front": (1, 1, 0, 0, 1, 1)}})
    return ds


def test_windows_pad_at_both_ends_and_stay_inside_episodes(dataset):
    windows = ChunkWindows(dataset, ["joint_pos", "front_rgb"], obs_horizon=2, pred_horizon=4)
    assert len(windows) == 7
    # t: expected obs steps and action steps (episode-local), To=2, Tp=4, actions from t-1.
    expected = {0: ([0, 0], [0, 0, 1, 2]), 1: ([0, 1], [0, 1, 2, 2]), 2: ([1, 2], [1, 2, 2, 2])}
    expected.update({3 + t: ([max(t - 1, 0), t], [min(max(s, 0), 3) for s in range(t - 1, t + 3)])
                     for t in range(4)})
    for index, (obs_steps, action_steps) in expected.items():
        e = 0 if index < 3 else 1
        obs, action = windows[index]
        assert obs["joint_pos"].shape == (2, 8) and action.shape == (4, 8)
        assert obs["joint_pos"][:, 0].tolist() == [100 * e + s for s in obs_steps]
        assert action[:, 0].tolist() == [100 * e + s + 0.5 for s in action_steps]
        assert obs["front_rgb"].dtype == torch.uint8 and obs["front_rgb"].shape == (2, 1, 1, 3)
        assert obs["front_rgb"][:, 0, 0, 0].tolist() == [10 * e + s for s in obs_steps]
    assert windows[-1][1][:, 0].tolist() == [102.5, 103.5, 103.5, 103.5]


def test_a_batch_of_indices_equals_the_samples_stacked(dataset):
    windows = ChunkWindows(dataset, ["joint_pos", "front_rgb"], obs_horizon=3, pred_horizon=5)
    batch = [6, 0, 3, 2, 2]
    obs, action = windows[batch]
    assert obs["joint_pos"].shape == (5, 3, 8) and action.shape == (5, 5, 8)
    for row, index in enumerate(batch):
        one_obs, one_action = windows[index]
        assert torch.equal(action[row], one_action)
        for key in one_obs:
            assert torch.equal(obs[key][row], one_obs[key])
    # Works as a DataLoader with a batch sampler and no per-item collation.
    sampler = torch.utils.data.BatchSampler(torch.utils.data.SequentialSampler(windows), 4, drop_last=False)
    loader = torch.utils.data.DataLoader(windows, sampler=sampler, batch_size=None)
    assert [a.shape[0] for _, a in loader] == [4, 3]
    with pytest.raises(IndexError):
        windows[7]


def test_episode_subset_for_train_val_splits(dataset):
    windows = ChunkWindows(dataset, ["joint_pos"], obs_horizon=1, pred_horizon=2, episodes=[1])
    assert len(windows) == 4
    obs, action = windows[0]
    assert obs["joint_pos"][:, 0].tolist() == [100.0]
    assert action[:, 0].tolist() == [100.5, 101.5]


def test_streamed_images_give_the_same_windows_as_in_memory(tmp_path):
    """stream=True leaves images (> 4 KB a frame) on disk and reads each sample's chunk: the same
    windows, one by one and as a batch, with nothing of them held in memory."""
    ds = EpisodeDataset.create(tmp_path / "d", {"joint_names": JOINTS, "rate_hz": 10})
    rng = np.random.default_rng(0)
    for length in (40, 3, 75):
        ds.append_episode({"joint_pos": rng.normal(size=(length, 8)), "action": rng.normal(size=(length, 8)),
                           "front_rgb": rng.integers(0, 256, (length, 48, 64, 3), dtype=np.uint8)},
                          {"task": "push", "success": True})
    memory = ChunkWindows(ds, ["joint_pos", "front_rgb"], obs_horizon=2, pred_horizon=16)
    streamed = ChunkWindows(ds, ["joint_pos", "front_rgb"], obs_horizon=2, pred_horizon=16, stream=True)
    assert streamed.streamed == ["front_rgb"] and "front_rgb" not in streamed.arrays
    batch = rng.permutation(len(memory))[:50]
    for index in (0, 39, 40, 42, 43, len(memory) - 1, batch):
        (a, action_a), (b, action_b) = memory[index], streamed[index]
        assert torch.equal(action_a, action_b)
        assert all(torch.equal(a[k], b[k]) for k in a)
