"""Checkpoint folders: exact save/load round trip, device mapping, one-line errors for bad files."""

import json

import numpy as np
import pytest
import torch

from robot_rl.errors import DataError
from robot_rl.policies.checkpoint import CONFIG, NORMALIZER, WEIGHTS
from robot_rl.policies.diffusion.config import DiffusionConfig
from robot_rl.policies.diffusion.model import DiffusionPolicy
from robot_rl.policies.diffusion.normalizer import Normalizer
from robot_rl.policies.loading import load_policy

SEEDS = [0, 7]


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # small models: one intra-op thread


def make_policy(seed: int = 0) -> DiffusionPolicy:
    torch.manual_seed(seed)
    config = DiffusionConfig(down_dims=(16, 32, 64), n_groups=4, step_embed_dim=16, lowdim_encoder="mlp")
    rng = np.random.default_rng(seed)
    stats = {}
    for key, shape in {**config.obs_shapes, "action": (8,)}.items():
        lo = rng.uniform(-2, 0, shape)
        stats[key] = {"min": lo.tolist(), "max": (lo + rng.uniform(0.1, 3, shape)).tolist()}
    return DiffusionPolicy(config, Normalizer(stats)).eval()


def history(config, seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.uniform(-1, 1, (2, *s)).astype(np.float32) for k, s in config.obs_shapes.items()}


@pytest.fixture
def saved(tmp_path):
    policy = make_policy()
    policy.save_checkpoint(tmp_path / "ckpt")
    return policy, tmp_path / "ckpt"


@pytest.mark.parametrize("seed", SEEDS)
def test_save_load_gives_identical_outputs(tmp_path, seed):
    policy = make_policy(seed)
    policy.save_checkpoint(tmp_path / "ckpt")
    loaded = DiffusionPolicy.from_checkpoint(tmp_path / "ckpt", device="cpu")
    assert not loaded.training and loaded.config == policy.config
    for key, value in policy.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    hist = history(policy.config, seed)
    for n in (1, 8):
        want = policy.sample_chunks(hist, n, torch.Generator().manual_seed(seed))
        got = loaded.sample_chunks(hist, n, torch.Generator().manual_seed(seed))
        np.testing.assert_array_equal(got, want)
    policy.reset(seed=3)
    loaded.reset(seed=3)
    obs = {k: v[0] for k, v in hist.items()}
    np.testing.assert_array_equal(loaded.act(obs), policy.act(obs))


def test_folder_holds_safetensors_and_json_only(saved):
    policy, path = saved
    assert sorted(p.name for p in path.iterdir()) == sorted([WEIGHTS, CONFIG, NORMALIZER])
    assert (path / WEIGHTS).read_bytes()[8:9] == b"{"  # safetensors: u64 header size, then JSON
    config = json.loads((path / CONFIG).read_text())
    assert config["policy"] == "diffusion" and config["down_dims"] == [16, 32, 64]
    assert json.loads((path / NORMALIZER).read_text())["stats"].keys() == policy.normalizer.stats.keys()
    modes = {p.name: p.stat().st_mode & 0o777 for p in path.iterdir()}
    assert len(set(modes.values())) == 1, modes  # the weights readable like the rest (safetensors writes 0600)


def test_the_shared_loader_loads_it(saved):
    policy, path = saved
    loaded = load_policy(str(path))
    assert isinstance(loaded, DiffusionPolicy)
    hist = history(policy.config)
    np.testing.assert_array_equal(loaded.predict_chunk(hist, torch.Generator().manual_seed(1)),
                                  policy.predict_chunk(hist, torch.Generator().manual_seed(1)))


def test_saving_again_replaces_the_checkpoint(saved, tmp_path):
    _, path = saved
    other = make_policy(seed=5)
    other.save_checkpoint(path, extra_files={"curves.csv": b"step,loss\n1,0.5\n"})
    loaded = DiffusionPolicy.from_checkpoint(path)
    assert torch.equal(loaded.unet.final_conv[1].weight, other.unet.final_conv[1].weight)
    assert (path / "curves.csv").read_text().startswith("step")
    assert not list(path.glob(".*.tmp"))


@pytest.mark.parametrize("name", [WEIGHTS, CONFIG, NORMALIZER])
def test_missing_file_names_it(saved, name):
    _, path = saved
    (path / name).unlink()
    with pytest.raises(DataError, match=name.replace(".", r"\.")) as e:
        DiffusionPolicy.from_checkpoint(path)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_weights_name_the_file(saved, damage):
    _, path = saved
    data = (path / WEIGHTS).read_bytes()
    (path / WEIGHTS).write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x80\x03}q\x00." * 10,
                                  "empty": b""}[damage])
    with pytest.raises(DataError, match="model.safetensors") as e:
        DiffusionPolicy.from_checkpoint(path)
    assert "\n" not in str(e.value)


def test_invalid_config_names_config_json(saved):
    _, path = saved
    config = json.loads((path / CONFIG).read_text())
    (path / CONFIG).write_text(json.dumps({**config, "obs_horizon": 0}))
    with pytest.raises(DataError, match="config.json.*obs_horizon"):
        DiffusionPolicy.from_checkpoint(path)
    (path / CONFIG).write_text("{")
    with pytest.raises(DataError, match="config.json.*JSON"):
        DiffusionPolicy.from_checkpoint(path)


def test_weights_that_do_not_fit_the_config_are_refused(saved):
    _, path = saved
    config = json.loads((path / CONFIG).read_text())
    (path / CONFIG).write_text(json.dumps({**config, "down_dims": [16, 32, 128]}))
    with pytest.raises(DataError, match="model.safetensors.*do not match"):
        DiffusionPolicy.from_checkpoint(path)


def test_files_from_different_saves_are_refused(saved, tmp_path):
    _, path = saved
    make_policy(seed=1).save_checkpoint(tmp_path / "other")
    (path / NORMALIZER).write_bytes((tmp_path / "other" / NORMALIZER).read_bytes())
    with pytest.raises(DataError, match="different saves"):
        DiffusionPolicy.from_checkpoint(path)


def test_missing_folder_and_unavailable_device(tmp_path, saved):
    with pytest.raises(DataError, match="no checkpoint folder"):
        DiffusionPolicy.from_checkpoint(tmp_path / "nope")
    if not torch.cuda.is_available():
        from robot_rl.errors import ConfigError

        with pytest.raises(ConfigError, match="CUDA is not available"):
            DiffusionPolicy.from_checkpoint(saved[1], device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cpu_checkpoint_loads_on_gpu_and_back(saved, tmp_path):
    policy, path = saved
    gpu = DiffusionPolicy.from_checkpoint(path, device="cuda")
    assert gpu.device.type == "cuda"
    hist = history(policy.config)
    np.testing.assert_allclose(gpu.predict_chunk(hist, torch.Generator().manual_seed(0)),
                               policy.predict_chunk(hist, torch.Generator().manual_seed(0)), atol=1e-4)
    gpu.save_checkpoint(tmp_path / "from_gpu")
    back = DiffusionPolicy.from_checkpoint(tmp_path / "from_gpu", device="cpu")
    for key, value in policy.state_dict().items():
        assert torch.equal(back.state_dict()[key], value)


@pytest.mark.parametrize("key", ["obs_keys", "noise_scale", "action_horizon"])
def test_a_config_key_missing_is_refused_not_defaulted(saved, key):
    _, saved = saved
    """With obs_keys deleted the same weights used to load and act 0.5 rad differently."""
    cfg = json.loads((saved / CONFIG).read_text())
    del cfg[key]
    (saved / CONFIG).write_text(json.dumps(cfg))
    with pytest.raises(DataError, match=rf"config.json: invalid config \(fields \['{key}'\] are missing"):
        DiffusionPolicy.from_checkpoint(saved)


def test_a_config_value_of_the_wrong_type_is_refused(saved):
    _, saved = saved
    cfg = json.loads((saved / CONFIG).read_text())
    cfg["action_horizon"] = "4"
    (saved / CONFIG).write_text(json.dumps(cfg))
    with pytest.raises(DataError, match="field action_horizon is '4', expected a int"):
        DiffusionPolicy.from_checkpoint(saved)


def test_a_normalizer_of_the_wrong_shape_is_refused_at_load(saved):
    _, saved = saved
    norm = json.loads((saved / NORMALIZER).read_text())
    key = "joint_pos"
    norm["stats"][key] = {"min": [0.0] * 3, "max": [1.0] * 3}
    (saved / NORMALIZER).write_text(json.dumps(norm))
    with pytest.raises(DataError, match=rf"normalizer.json: normalizer statistics have shapes \{{'{key}': \(3,\)\}}"):
        DiffusionPolicy.from_checkpoint(saved)


@pytest.mark.parametrize("content", [b"[1, 2, 3]", b"\xff\xfe\x00binary"])
def test_load_policy_names_a_config_that_is_not_an_object(saved, content):
    _, saved = saved
    (saved / CONFIG).write_bytes(content)
    with pytest.raises(DataError, match="config.json: (expected a JSON object|not valid JSON)"):
        load_policy(str(saved))


def test_load_policy_says_what_a_residual_checkpoint_is_for(saved):
    _, saved = saved
    cfg = json.loads((saved / CONFIG).read_text())
    (saved / CONFIG).write_text(json.dumps({**cfg, "policy": "residual"}))
    with pytest.raises(DataError, match="a residual checkpoint is not a standalone policy: pass it as --residual"):
        load_policy(str(saved))
