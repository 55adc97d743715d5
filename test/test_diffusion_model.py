"""DiffusionPolicy inference: the fast DDIM path against plain diffusers, step counts, shapes, act()."""

import numpy as np
import pytest
import torch

from robot_rl.errors import ConfigError
from robot_rl.policies.diffusion.config import DiffusionConfig
from robot_rl.policies.diffusion.model import (DenoisePlan, DiffusionPolicy, ddim_update,
                                               make_inference_scheduler, make_train_scheduler)

SEEDS = [0, 1, 2]


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # small models: one intra-op thread


def tiny_config(**kw) -> DiffusionConfig:
    return DiffusionConfig(**{"down_dims": (16, 32, 64), "step_embed_dim": 16, "n_groups": 4, **kw})


def history(config: DiffusionConfig, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.uniform(-1, 1, (config.obs_horizon, *config.obs_shapes[k])).astype(np.float32)
            for k in config.obs_keys}


def obs_batch(config: DiffusionConfig, batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.rand(batch, config.obs_horizon, *config.obs_shapes[k], generator=g) * 2 - 1
            for k in config.obs_keys}


def test_default_config_is_the_documented_one():
    c = DiffusionConfig()
    assert (c.obs_horizon, c.pred_horizon, c.action_horizon, c.action_dim) == (2, 16, 8, 8)
    assert (c.num_train_timesteps, c.beta_schedule) == (100, "squaredcos_cap_v2")
    assert (c.prediction_type, c.clip_sample) == ("epsilon", True)
    assert c.num_inference_steps == 10 and c.ema_power == 0.75
    assert 1e6 < DiffusionPolicy(c).num_parameters() < 10e6  # "a few M": fast enough for 30 ms chunks


def test_schedulers_are_ddpm_for_training_and_ddim_for_inference():
    c = DiffusionConfig()
    train = make_train_scheduler(c)
    assert train.config.num_train_timesteps == 100 and train.config.beta_schedule == "squaredcos_cap_v2"
    assert train.config.prediction_type == "epsilon" and train.config.clip_sample
    infer = make_inference_scheduler(c)
    assert type(infer).__name__ == "DDIMScheduler" and len(infer.timesteps) == 10
    plan = DenoisePlan.build(c, 10, "cpu")
    assert plan.timesteps.tolist() == infer.timesteps.tolist()


@pytest.mark.parametrize("seed", SEEDS)
def test_ddim_update_is_bit_identical_to_diffusers_step(seed):
    c = DiffusionConfig()
    scheduler = make_inference_scheduler(c)
    plan = DenoisePlan.build(c, c.num_inference_steps, "cpu")
    g = torch.Generator().manual_seed(seed)
    for i, t in enumerate(scheduler.timesteps):
        x, out = torch.randn(4, 16, 8, generator=g), torch.randn(4, 16, 8, generator=g)
        want = scheduler.step(out, t, x).prev_sample
        assert torch.equal(ddim_update(x, out, plan.coefs[i], True, 1.0), want)


@pytest.mark.parametrize("backend", ["trace", "eager"])
@pytest.mark.parametrize("size,steps,batch", [("default", 10, 1), ("tiny", 10, 3), ("tiny", 100, 1)])
def test_fast_path_matches_the_plain_diffusers_loop(backend, size, steps, batch):
    """The default size exercises the batch-1 GEMM convolutions (>= 128 channels)."""
    torch.manual_seed(0)
    config = DiffusionConfig(inference_backend=backend) if size == "default" else tiny_config(inference_backend=backend)
    policy = DiffusionPolicy(config).eval()
    obs = obs_batch(policy.config, batch)
    noise = torch.randn(batch, 16, 8, generator=torch.Generator().manual_seed(1))
    fast = policy.generate(obs, noise=noise, num_inference_steps=steps)
    reference = policy.generate_reference(obs, noise, num_inference_steps=steps)
    torch.testing.assert_close(fast, reference, rtol=1e-4, atol=1e-4)


def test_traced_path_follows_in_place_weight_updates():
    """EMA and load_state_dict change weights in place; the cached trace must see that."""
    torch.manual_seed(0)
    policy = DiffusionPolicy(tiny_config()).eval()
    obs, noise = obs_batch(policy.config, 1), torch.randn(1, 16, 8)
    before = policy.generate(obs, noise=noise)
    with torch.no_grad():
        for p in policy.parameters():
            p.mul_(1.05).add_(0.01)
    after = policy.generate(obs, noise=noise)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, policy.generate_reference(obs, noise), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("steps", [1, 5, 10, 20])
def test_ddim_calls_the_unet_exactly_num_inference_steps_times(steps):
    policy = DiffusionPolicy(tiny_config(num_inference_steps=steps, inference_backend="eager")).eval()
    calls = {"fast": 0, "reference": 0}
    forward_film = policy.unet.forward_film

    def counting_forward_film(*args):
        calls["fast"] += 1
        return forward_film(*args)

    policy.unet.forward_film = counting_forward_film
    policy.unet.register_forward_hook(lambda *_: calls.__setitem__("reference", calls["reference"] + 1))
    policy.predict_chunk(history(policy.config))
    policy.sample_chunks(history(policy.config), 4)
    assert calls["fast"] == 2 * steps
    policy.generate_reference(obs_batch(policy.config, 1), torch.randn(1, 16, 8))
    assert calls["reference"] == steps


@pytest.mark.parametrize("n", [1, 32])
def test_sample_chunks_shapes_finiteness_and_seeding(n):
    policy = DiffusionPolicy(tiny_config()).eval()
    hist = history(policy.config)
    chunks = policy.sample_chunks(hist, n, torch.Generator().manual_seed(0))
    assert chunks.shape == (n, 16, 8) and chunks.dtype == np.float32 and np.isfinite(chunks).all()
    again = policy.sample_chunks(hist, n, torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(chunks, again)
    if n > 1:
        assert not np.allclose(chunks[0], chunks[1])  # one forward pass, n different noise draws
    assert policy.predict_chunk(hist).shape == (16, 8)
    assert policy.sample_executable(hist, n).shape == (n, 8, 8)


def test_noise_scale_zero_is_deterministic_ddim_and_scales_the_initial_noise():
    hist = history(tiny_config())
    policy = DiffusionPolicy(tiny_config(noise_scale=0.0)).eval()
    a = policy.sample_chunks(hist, 3, torch.Generator().manual_seed(0))
    b = policy.sample_chunks(hist, 3, torch.Generator().manual_seed(1))
    np.testing.assert_array_equal(a, b)  # every seed and every sample: the same chunk
    np.testing.assert_array_equal(a[0], a[2])
    zero = policy.generate({k: torch.as_tensor(v)[None] for k, v in hist.items()}, noise=torch.zeros(1, 16, 8))
    np.testing.assert_allclose(a[:1], zero.numpy(), atol=1e-4)  # the chunk zero noise maps (batch 3 vs 1)
    half = DiffusionPolicy(tiny_config(noise_scale=0.5)).eval()
    half.load_state_dict(policy.state_dict())
    g = torch.Generator().manual_seed(4)
    expected = 0.5 * torch.randn(2, 16, 8, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(half._noise(2, g), expected)
    with pytest.raises(ConfigError, match="noise_scale"):
        tiny_config(noise_scale=-0.1)


def test_history_as_list_of_observations_and_short_history_are_padded():
    policy = DiffusionPolicy(tiny_config()).eval()
    hist = history(policy.config)
    frames = [{k: v[t] for k, v in hist.items()} for t in range(2)]
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    np.testing.assert_array_equal(policy.predict_chunk(frames, g()), policy.predict_chunk(hist, g()))
    first_only = {k: np.stack([v[0], v[0]]) for k, v in hist.items()}
    np.testing.assert_array_equal(policy.predict_chunk(frames[:1], g()), policy.predict_chunk(first_only, g()))


def test_act_keeps_history_and_replans_every_action_horizon():
    policy = DiffusionPolicy(tiny_config()).eval()
    chunks = []
    predict = policy.predict_chunk

    def recording_predict(h, *a, **k):
        chunks.append(predict(h, *a, **k))
        return chunks[-1]

    policy.predict_chunk = recording_predict
    rng = np.random.default_rng(0)
    observations = [{k: rng.uniform(-1, 1, s).astype(np.float32) for k, s in policy.config.obs_shapes.items()}
                    for _ in range(17)]
    policy.reset(seed=5)
    actions = [policy.act(o) for o in observations]
    assert len(chunks) == 3  # steps 0, 8, 16
    assert all(a.shape == (8,) and np.isfinite(a).all() for a in actions)
    # The executed actions of a chunk start at the latest observation: index To - 1.
    np.testing.assert_array_equal(np.stack(actions[:8]), chunks[0][1:9])
    np.testing.assert_array_equal(np.stack(actions[8:16]), chunks[1][1:9])
    policy.reset(seed=5)
    np.testing.assert_array_equal(np.stack([policy.act(o) for o in observations]), np.stack(actions))


def test_observe_pads_with_the_first_observation_and_needs_the_keys():
    policy = DiffusionPolicy(tiny_config())
    o = {k: np.full(s, 1.0, np.float32) for k, s in policy.config.obs_shapes.items()}
    h = policy.observe(o)
    assert h["joint_pos"].shape == (2, 8) and (h["joint_pos"] == 1).all()
    with pytest.raises(ConfigError, match="ee_pos"):
        policy.observe({"joint_pos": np.zeros(8)})


def test_compute_loss_is_finite_and_reaches_every_module():
    policy = DiffusionPolicy(tiny_config(lowdim_encoder="mlp")).train()
    c = policy.config
    obs = obs_batch(c, 8)
    loss = policy.compute_loss((obs, torch.rand(8, c.pred_horizon, c.action_dim)))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in policy.parameters())


@pytest.mark.parametrize("bad", [
    {"action_horizon": 16},  # > Tp - To + 1
    {"pred_horizon": 10},  # not divisible by 4 with three levels
    {"obs_keys": ("joint_pos", "missing")},
    {"kernel_size": 4},
    {"beta_schedule": "cosine"},
    {"num_inference_steps": 0},
    {"down_dims": (30, 60)},  # not divisible by n_groups
])
def test_config_validation_names_the_problem(bad):
    with pytest.raises(ConfigError, match="DiffusionConfig"):
        DiffusionConfig(**bad)


def test_config_json_round_trip():
    c = tiny_config(obs_keys=("joint_pos", "front_rgb"), obs_shapes={"joint_pos": (8,), "front_rgb": (96, 96, 3)})
    assert DiffusionConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError, match="unknown"):
        DiffusionConfig.from_dict({**c.to_dict(), "bogus": 1})


@pytest.mark.parametrize("channels,length,kernel", [(128, 8, 5), (256, 4, 5), (512, 4, 3), (8, 16, 5)])
def test_batch1_gemm_convolution_equals_conv1d(channels, length, kernel):
    from robot_rl.policies.diffusion.unet import conv1d

    conv = torch.nn.Conv1d(channels, 64, kernel, padding=kernel // 2)
    x = torch.randn(1, channels, length)
    with torch.no_grad():
        torch.testing.assert_close(conv1d(conv, x), conv(x), rtol=1e-5, atol=1e-5)


def test_warmup_prepares_the_batch_sizes_it_is_given():
    policy = DiffusionPolicy(tiny_config()).eval()
    policy.warmup((1, 4))
    assert policy.sample_chunks(history(policy.config), 4).shape == (4, 16, 8)
