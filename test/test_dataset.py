"""EpisodeDataset on real files: round trip, atomic commits across processes, one-line errors."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

import robot_rl.data.dataset as dataset_mod
from robot_rl.data.dataset import EpisodeDataset
from robot_rl.errors import DataError

JOINTS = [f"joint{i}" for i in range(1, 8)] + ["finger_joint"]
META = {"joint_names": JOINTS, "rate_hz": 10.0}
INTRINSICS = {"front": (80.0, 80.0, 8.0, 6.0, 16, 12)}
REPO = Path(__file__).resolve().parents[1]


def make_episode(seed: int, length: int = 7, images: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    frames = {
        "joint_pos": rng.normal(size=(length, 8)),  # float64: stored as float32
        "joint_vel": rng.normal(size=(length, 8)).astype(np.float32),
        "ee_pos": rng.normal(size=(length, 3)).astype(np.float32),
        "ee_quat": rng.normal(size=(length, 4)).astype(np.float32),
        "object_poses": rng.normal(size=(length, 2, 7)).astype(np.float32),
        "action": rng.normal(size=(length, 8)).astype(np.float32),
        "reward": rng.normal(size=length).astype(np.float32),
        "success": np.arange(length) == length - 1,
    }
    if images:
        frames["front_rgb"] = rng.integers(0, 256, size=(length, 12, 16, 3), dtype=np.uint8)
        frames["front_depth"] = rng.uniform(0.2, 2.0, size=(length, 12, 16)).astype(np.float32)
        frames["points"] = rng.normal(size=(length, 32, 6)).astype(np.float32)
    return frames


def episode_meta(seed: int) -> dict:
    return {"task": "push", "source": {"kind": "expert", "quality": "good"}, "seed": seed,
            "joint_names": JOINTS, "rate_hz": 10, "camera_intrinsics": INTRINSICS}


def run_child(code: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, **kwargs)


def test_round_trip_low_dim_images_points(tmp_path):
    root = tmp_path / "demos"
    ds = EpisodeDataset.create(root, META)
    episodes = [make_episode(seed, length) for seed, length in [(0, 7), (1, 3)]]
    for seed, frames in enumerate(episodes):
        assert ds.append_episode(frames, episode_meta(seed)) == seed

    ds = EpisodeDataset.open(root)
    assert ds.num_episodes == 2
    assert ds.episode_lengths.tolist() == [7, 3]
    assert ds.success.tolist() == [True, True]
    assert ds.keys["joint_pos"] == {"shape": [8], "dtype": "float32"}
    assert ds.keys["front_rgb"] == {"shape": [12, 16, 3], "dtype": "uint8"}
    assert ds.meta["joint_names"] == JOINTS and ds.meta["rate_hz"] == 10.0
    for i, frames in enumerate(episodes):
        loaded = ds.load_episode(i)
        assert set(loaded) == set(frames)
        for key, value in frames.items():
            expected = value.astype(np.float32) if value.dtype == np.float64 else value
            assert loaded[key].dtype == expected.dtype, key
            np.testing.assert_array_equal(loaded[key], expected, err_msg=key)
    meta = ds.episode_meta(1)
    assert meta["task"] == "push" and meta["seed"] == 1 and meta["success"] is True
    assert meta["source"] == {"kind": "expert", "quality": "good"}
    assert meta["camera_intrinsics"]["front"] == {"fx": 80.0, "fy": 80.0, "cx": 8.0, "cy": 6.0,
                                                  "width": 16, "height": 12}
    # Only the requested keys; the returned arrays are the caller's to modify.
    subset = ds.load_episode(0, ["action", "front_rgb"])
    assert set(subset) == {"action", "front_rgb"}
    subset["action"][:] = 0
    np.testing.assert_array_equal(ds.load_episode(0, ["action"])["action"], episodes[0]["action"])
    # Flat arrays for training, DP-style episode ends.
    flat, ends = ds.concat_episodes(["joint_vel", "front_rgb"])
    assert ends.tolist() == [7, 10]
    np.testing.assert_array_equal(flat["joint_vel"], np.concatenate([e["joint_vel"] for e in episodes]))
    assert [i for i, _ in ds.iter_episodes(["reward"], episodes=[1])] == [1]
    # The layout is plain zarr v3: zarr-python reads it too.
    group = zarr.open_group(root / "episodes" / "episode_000000", mode="r")
    np.testing.assert_array_equal(group["points"][:], episodes[0]["points"])
    assert group.attrs["length"] == 7
    assert json.loads((root / "dataset.json").read_text())["format_version"] == 1


def test_frame_slices_across_chunks_match_zarr(tmp_path, monkeypatch):
    monkeypatch.setattr(dataset_mod, "_CHUNK_BYTES", 3 * 12 * 16 * 3)  # 3 frames of rgb per chunk
    ds = EpisodeDataset.create(tmp_path / "d", META)
    frames = make_episode(5, length=10)
    ds.append_episode(frames, episode_meta(5))
    path = ds.episode_path(0) / "front_rgb"
    assert zarr.open_array(path, mode="r").chunks[0] == 3
    for sl in [slice(0, 10), slice(2, 7), slice(9, 10), slice(4, 4), slice(-3, None)]:
        np.testing.assert_array_equal(ds.load_episode(0, ["front_rgb"], frames=sl)["front_rgb"],
                                      frames["front_rgb"][sl])
        np.testing.assert_array_equal(ds.load_episode(0, ["front_rgb"], frames=sl)["front_rgb"],
                                      zarr.open_array(path, mode="r")[sl])


def test_reads_skip_zarr_python_for_our_layout_and_fall_back_for_others(tmp_path, monkeypatch):
    ds = EpisodeDataset.create(tmp_path / "d", META)
    frames = make_episode(0)
    ds.append_episode(frames, episode_meta(0))
    # An array rewritten by another tool in another layout (flat v2-style chunk keys) still reads.
    path = ds.episode_path(0) / "reward"
    zarr.create_array(path, data=frames["reward"], chunks=(2,), chunk_key_encoding={"name": "v2"},
                      overwrite=True)
    np.testing.assert_array_equal(EpisodeDataset.open(tmp_path / "d").load_episode(0, ["reward"])["reward"],
                                  frames["reward"])

    def no_zarr(*args, **kwargs):
        raise AssertionError("our own arrays must not need zarr-python to read")

    monkeypatch.setattr(dataset_mod.zarr, "open_array", no_zarr)
    loaded = EpisodeDataset.open(tmp_path / "d").load_episode(0, [k for k in frames if k != "reward"])
    np.testing.assert_array_equal(loaded["front_rgb"], frames["front_rgb"])


@pytest.mark.integration
def test_sigkill_mid_write_leaves_an_ignored_temp_dir_cleaned_by_next_writer(tmp_path):
    root = tmp_path / "d"
    ds = EpisodeDataset.create(root, META)
    ds.append_episode(make_episode(0), episode_meta(0))
    ready = tmp_path / "arrays-written"
    # The child writes every array of an episode, then hangs where it would flush and rename.
    child = run_child(f"""
        import time, numpy as np
        import robot_rl.data.dataset as m
        def hang(path):
            open({str(ready)!r}, "w").close()
            time.sleep(60)
        m._fsync_tree = hang
        ds = m.EpisodeDataset.open({str(root)!r})
        frames = {{k: np.asarray(v) for k, v in ds.load_episode(0).items()}}
        ds.append_episode(frames, {{"task": "push", "bag": "another", "camera_intrinsics": {INTRINSICS!r}}})
    """)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert child.poll() is None, "child exited before writing"
            assert time.monotonic() < deadline, "child never finished writing arrays"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    temps = [p for p in (root / "episodes").iterdir() if p.name.startswith(".tmp-")]
    assert len(temps) == 1 and (temps[0] / "action" / "zarr.json").exists()

    assert ds.refresh() == 0
    reopened = EpisodeDataset.open(root)
    assert reopened.num_episodes == 1
    assert reopened.append_episode(make_episode(2), episode_meta(2)) == 1
    assert not temps[0].exists()
    assert sorted(p.name for p in (root / "episodes").iterdir()) == ["episode_000000", "episode_000001"]


@pytest.mark.integration
def test_refresh_sees_an_episode_committed_by_another_process(tmp_path):
    root = tmp_path / "d"
    ds = EpisodeDataset.create(root, META)
    ds.append_episode(make_episode(0, images=False), {"task": "reach"})
    child = run_child(f"""
        import numpy as np
        from robot_rl.data.dataset import EpisodeDataset
        ds = EpisodeDataset.open({str(root)!r})
        frames = ds.load_episode(0)
        frames["action"] = frames["action"] + 1.0
        ds.append_episode(frames, {{"task": "reach", "seed": 7}})
    """)
    assert child.wait(timeout=120) == 0
    assert ds.num_episodes == 1
    assert ds.refresh() == 1
    assert ds.num_episodes == 2 and ds.episode_meta(1)["seed"] == 7
    np.testing.assert_allclose(ds.load_episode(1, ["action"])["action"],
                               ds.load_episode(0, ["action"])["action"] + 1.0)


def one_line_error(excinfo, root) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and str(root) in message
    return message


def test_mismatched_joint_names_is_a_one_line_data_error(tmp_path):
    root = tmp_path / "d"
    ds = EpisodeDataset.create(root, META)
    ds.append_episode(make_episode(0), episode_meta(0))
    swapped = JOINTS[1::-1] + JOINTS[2:]
    with pytest.raises(DataError) as excinfo:
        ds.append_episode(make_episode(1), {**episode_meta(1), "joint_names": swapped})
    assert "joint_names" in one_line_error(excinfo, root)
    assert ds.num_episodes == 1
    assert [p.name for p in (root / "episodes").iterdir()] == ["episode_000000"]


@pytest.mark.parametrize("change, words", [
    (lambda f: f.update(joint_pos=f["joint_pos"][:, :7]), "for the dataset's joint_names"),
    (lambda f: f.update(object_poses=f["object_poses"][:, :1]), "per-frame shape"),
    (lambda f: f.pop("ee_quat"), "missing ['ee_quat']"),
    (lambda f: f.update(extra=f["reward"]), "unexpected ['extra']"),
    (lambda f: f.update(front_rgb=f["front_rgb"].astype(np.float32)), "dtype"),
    (lambda f: f.update(reward=f["reward"][:-1]), "one length"),
    (lambda f: f["action"].__setitem__((2, 3), np.nan), "NaN"),
])
def test_disagreeing_episodes_are_refused(tmp_path, change, words):
    root = tmp_path / "d"
    ds = EpisodeDataset.create(root, META)
    ds.append_episode(make_episode(0), episode_meta(0))
    frames = make_episode(1)
    change(frames)
    with pytest.raises(DataError) as excinfo:
        ds.append_episode(frames, episode_meta(1))
    assert words in one_line_error(excinfo, root)
    assert ds.num_episodes == 1


def test_images_need_camera_intrinsics(tmp_path):
    ds = EpisodeDataset.create(tmp_path / "d", META)
    with pytest.raises(DataError) as excinfo:
        ds.append_episode(make_episode(0), {"task": "push"})
    assert "camera_intrinsics['front']" in one_line_error(excinfo, tmp_path / "d")


def test_missing_and_corrupt_datasets_are_one_line_errors(tmp_path):
    with pytest.raises(DataError) as excinfo:
        EpisodeDataset.open(tmp_path / "nothing")
    assert "dataset.json missing" in one_line_error(excinfo, tmp_path / "nothing")

    root = tmp_path / "d"
    EpisodeDataset.create(root, META).append_episode(make_episode(0, images=False), {"task": "reach"})
    (root / "dataset.json").write_text('{"format": "robot_rl.episodes", "format_')
    with pytest.raises(DataError) as excinfo:
        EpisodeDataset.open(root)
    assert "unreadable dataset meta" in one_line_error(excinfo, root)

    (root / "dataset.json").write_text(json.dumps({**META, "format": "robot_rl.episodes", "format_version": 99}))
    with pytest.raises(DataError) as excinfo:
        EpisodeDataset.open(root)
    assert "format_version 99" in one_line_error(excinfo, root)

    with pytest.raises(DataError):
        EpisodeDataset.create(root, META)  # never overwrite


def test_corrupt_chunk_is_a_one_line_error(tmp_path):
    root = tmp_path / "d"
    ds = EpisodeDataset.create(root, META)
    ds.append_episode(make_episode(0, images=False), {"task": "reach"})
    (ds.episode_path(0) / "action" / "c" / "0" / "0").write_bytes(b"garbage")
    with pytest.raises(DataError) as excinfo:
        EpisodeDataset.open(root).load_episode(0, ["action"])
    assert "corrupt" in one_line_error(excinfo, root)


def test_open_or_create_checks_joint_names(tmp_path):
    root = tmp_path / "d"
    EpisodeDataset.open_or_create(root, META).append_episode(make_episode(0, images=False), {"task": "reach"})
    assert EpisodeDataset.open_or_create(root, META).num_episodes == 1
    with pytest.raises(DataError) as excinfo:
        EpisodeDataset.open_or_create(root, {**META, "joint_names": JOINTS[:7]})
    assert "joint_names" in one_line_error(excinfo, root)


def test_a_dataset_whose_key_shapes_disagree_with_its_arrays_is_refused_at_load(tmp_path):
    """It used to train silently on broadcast data."""
    root = tmp_path / "d"
    ds = EpisodeDataset.create(root, META)
    ds.append_episode(make_episode(0), episode_meta(0))
    meta = json.loads((root / "dataset.json").read_text())
    key = next(k for k in meta["keys"] if meta["keys"][k]["shape"])
    meta["keys"][key]["shape"] = [1] * len(meta["keys"][key]["shape"])
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=rf"{key}: holds .* frames of shape .*dataset.json says"):
        EpisodeDataset.open(root).load_episode(0)
