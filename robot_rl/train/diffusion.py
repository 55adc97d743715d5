"""Behaviour cloning of a diffusion policy (Chi et al., RSS 2023) from an episode dataset.

The whole loop is `train_diffusion()`: sample a batch of (To observations, Tp actions)
windows, DDPM noise-prediction loss, AdamW step, cosine learning rate with warm-up, EMA update.
Every `eval_every` steps the EMA weights are scored: the denoising loss and the action error of
DDIM chunks on fixed windows (cheap, no simulator), and success rate through the `evaluate`
callable when one is given (`sim_evaluator` builds one from `robot_rl.sim.rollout.evaluate`).
The EMA weights with the best success (or, without rollouts, the lowest action error) go to
`out/best/`, the latest to `out/last/`; curves.csv / curves.png are written next to both.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from diffusers.optimization import get_scheduler
from tqdm import tqdm

from robot_rl.errors import ConfigError, DataError
from robot_rl.perception.pointcloud import CLOUD_FILE
from robot_rl.policies.diffusion.config import DiffusionConfig, is_rgb_key
from robot_rl.policies.diffusion.ema import EMA
from robot_rl.policies.diffusion.model import DiffusionPolicy
from robot_rl.policies.diffusion.normalizer import normalizer_from_stats


@dataclass
class DiffusionTrainConfig:
    dataset: str = ""
    out: str = "runs/diffusion"
    num_steps: int = 20_000
    batch_size: int = 256
    max_episodes: int | None = None  # use at most this many (successful) demonstrations
    successful_only: bool = True
    val_fraction: float = 0.0  # held-out episodes for the loss / action-error curves
    eval_every: int = 2_000
    log_every: int = 200  # a curves.csv row (loss, lr) this often; evaluations add action error and success
    eval_windows: int = 256  # windows scored for the action error at each evaluation
    seed: int = 0
    device: str = "cpu"
    torch_threads: int = 0  # 0: leave torch's default
    init_checkpoint: str | None = None  # fine-tune: start from these weights and normalizer
    lr: float | None = None  # None: the policy config's (a fine-tune keeps its checkpoint's)
    # after training, the best checkpoint is evaluated at these DDIM noise scales x action
    # horizons (empty: the config's Ta) and keeps the best as its defaults (train/deployment.py)
    deploy_noise_scales: tuple[float, ...] = (1.0, 0.5, 0.0)
    deploy_action_horizons: tuple[int, ...] = ()
    # images and clouds: "memory" (concatenated in RAM), "disk" (each batch read from the episodes,
    # prefetched), "auto" (disk when they would take more than half the memory this process may use)
    stream: str = "auto"
    policy: DiffusionConfig = field(default_factory=DiffusionConfig)

    def __post_init__(self):
        if self.num_steps < 1 or self.batch_size < 1 or self.eval_every < 1 or self.log_every < 1:
            raise ConfigError("DiffusionTrainConfig: num_steps, batch_size, eval_every and log_every must be >= 1")
        if self.stream not in ("auto", "memory", "disk"):
            raise ConfigError(f"DiffusionTrainConfig: stream must be auto, memory or disk, got {self.stream!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"DiffusionTrainConfig: val_fraction must be in [0, 1), got {self.val_fraction}")
        from robot_rl.train.deployment import deployment_grid

        deployment_grid(self.policy, self.deploy_noise_scales, self.deploy_action_horizons)  # refused before training


EvalFn = Callable[[DiffusionPolicy], dict]  # policy -> {"success_rate": float, ...}


def sim_evaluator(task: str, num_episodes: int = 50, first_seed: int = 1_000_000,
                  env_kwargs: dict | None = None) -> EvalFn:
    """Success rate over seeded simulator episodes (seeds disjoint from the demonstrations')."""
    from robot_rl.sim.rollout import evaluate

    seeds = list(range(first_seed, first_seed + num_episodes))
    return lambda policy: evaluate(task, policy, seeds, env_kwargs=env_kwargs or {}, progress=False)


def env_evaluator(spec: str, num_episodes: int, policy: DiffusionConfig, first_seed: int = 1_000_000) -> EvalFn:
    """Success rate over seeded episodes of any gymnasium env with a dict observation (`--env`);
    refused before training when the env does not give what the policy reads or take what it acts."""
    from robot_rl.envs import make_env
    from robot_rl.sim.rollout import evaluate

    env, seeds = make_env(spec), list(range(first_seed, first_seed + num_episodes))
    spaces, problems = env.observation_space.spaces, []
    for key in policy.obs_keys:
        if key not in spaces:
            problems.append(f"it gives no {key!r} (it has {sorted(spaces)})")
        elif tuple(spaces[key].shape) != tuple(policy.obs_shapes[key]):
            problems.append(f"its {key!r} is {tuple(spaces[key].shape)}, the dataset's {tuple(policy.obs_shapes[key])}")
    if env.action_space.shape != (policy.action_dim,):
        problems.append(f"it takes actions of shape {env.action_space.shape}, the dataset has {policy.action_dim}")
    if problems:
        raise ConfigError(f"--env {spec} does not fit the dataset: {'; '.join(problems)}")
    return lambda model: evaluate(spec, model, seeds, env=env, progress=False)


def cloud_files(dataset, cfg: DiffusionConfig, episodes) -> dict[str, bytes] | None:
    """The checkpoint's record of how its training clouds were made (the episodes' meta "points":
    crop, voxel, N, the camera's image size), for the node to make its own the same way."""
    record = dataset.episode_meta(episodes[0]).get("points") if cfg.points_keys and len(episodes) else None
    return {CLOUD_FILE: json.dumps(record, indent=2).encode()} if record else None


def select_episodes(dataset, tc: DiffusionTrainConfig) -> tuple[list[int], list[int]]:
    """(train, held-out) episode indices: successful ones first-come, capped at max_episodes."""
    episodes = [i for i in range(dataset.num_episodes)
                if not tc.successful_only or bool(dataset.episode_meta(i).get("success", True))]
    if tc.max_episodes is not None:
        episodes = episodes[: tc.max_episodes]
    if not episodes:
        raise DataError(f"{dataset.root}: no {'successful ' if tc.successful_only else ''}episodes to train on")
    rng = np.random.default_rng(tc.seed)
    order = [episodes[i] for i in rng.permutation(len(episodes))]
    n_val = int(round(tc.val_fraction * len(order))) if len(order) > 1 else 0
    return sorted(order[n_val:]), sorted(order[:n_val])


def config_for_dataset(dataset, policy: DiffusionConfig) -> DiffusionConfig:
    """The policy config with observation shapes, action size and joint names read from the dataset."""
    missing = [k for k in (*policy.obs_keys, "action") if k not in dataset.keys]
    if missing:
        raise DataError(f"{dataset.root}: no key(s) {missing} (keys: {', '.join(dataset.keys)})")
    shapes = {k: tuple(dataset.keys[k]["shape"]) for k in policy.obs_keys}
    action_dim = int(dataset.keys["action"]["shape"][0])
    names = tuple(dataset.meta.get("joint_names", ()))
    return dataclasses.replace(policy, obs_shapes=shapes, action_dim=action_dim,
                               joint_names=names if len(names) == action_dim else ())


@torch.no_grad()
def score_windows(policy: DiffusionPolicy, batch, seed: int = 0) -> dict:
    """Denoising loss and DDIM chunk error (normalized units) on fixed windows, fixed noise."""
    obs, action = batch
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        loss = policy.compute_loss((obs, action)).item()
    gen = torch.Generator().manual_seed(seed)
    pred = policy.generate(obs, generator=gen)
    target = torch.as_tensor(action, device=pred.device).float()
    norm = policy.normalizer
    err = (norm.normalize("action", pred) - norm.normalize("action", target)).pow(2).mean().item()
    return {"loss": loss, "action_mse": err}


def train_diffusion(tc: DiffusionTrainConfig, dataset, evaluate: EvalFn | None = None,
                    progress: bool = True, best_metric: float = -float("inf")) -> dict:
    """Train, evaluate, checkpoint; returns the summary (also written to out/summary.json).
    `out/best` is replaced only by a score >= `best_metric` (carried over between --follow rounds)."""
    from robot_rl.data.stats import compute_stats
    from robot_rl.data.windows import ChunkWindows, epoch_batches, from_disk, prefetched
    from robot_rl.train.distributed import average_gradients, broadcast_parameters, close_world, init_world

    if tc.torch_threads > 0:
        torch.set_num_threads(tc.torch_threads)
    world = init_world(tc.device)  # torchrun: every rank trains on its share of each batch
    world.share(tc.batch_size)  # refuses a batch the ranks cannot split evenly, before any work
    progress = progress and world.main
    torch.manual_seed(tc.seed)
    rng = np.random.default_rng(tc.seed)
    draw = torch.Generator().manual_seed(tc.seed + 1)  # each global batch's noise and timesteps, on every rank
    out = Path(tc.out)
    out.mkdir(parents=True, exist_ok=True)
    init = DiffusionPolicy.from_checkpoint(tc.init_checkpoint, tc.device) if tc.init_checkpoint else None
    cfg = config_for_dataset(dataset, init.config if init else tc.policy)
    if init is not None and (cfg.obs_shapes, cfg.action_dim) != (init.config.obs_shapes, init.config.action_dim):
        raise DataError(f"{dataset.root}: observation or action shapes differ from checkpoint {tc.init_checkpoint}")
    if init is not None:
        from robot_rl.policies.fit import check_robot

        if init.robot is not None and dataset.robot is not None:
            check_robot(init.robot, dataset.robot, f"--init-checkpoint {tc.init_checkpoint}")
    if init is not None and init.config.joint_names and cfg.joint_names != init.config.joint_names:
        raise DataError(f"{dataset.root}: joint_names {list(cfg.joint_names)} differ from checkpoint "
                        f"{tc.init_checkpoint}'s {list(init.config.joint_names)}")

    # --- data: windows, statistics from the training episodes only ------------------------------
    train_eps, val_eps = select_episodes(dataset, tc)
    stream = from_disk(tc.stream, dataset, cfg.obs_keys, [*train_eps, *val_eps], say=print if world.main else None)
    windows = ChunkWindows(dataset, cfg.obs_keys, cfg.obs_horizon, cfg.pred_horizon, episodes=train_eps, stream=stream)
    val_windows = None
    if val_eps:
        val_windows = ChunkWindows(dataset, cfg.obs_keys, cfg.obs_horizon, cfg.pred_horizon, episodes=val_eps,
                                   stream=stream)
    stats = None if init else compute_stats(dataset, [*cfg.lowdim_keys, *cfg.points_keys, "action"], episodes=train_eps)
    score_src = val_windows or windows
    score_batch = score_src[np.sort(rng.choice(len(score_src), min(tc.eval_windows, len(score_src)), replace=False))]

    extras = cloud_files(dataset, cfg, train_eps)

    # --- model, optimiser, schedule, EMA ------------------------------------------------------------
    policy = init or DiffusionPolicy(cfg, normalizer_from_stats(stats, cfg), robot=dataset.robot).to(tc.device)
    policy.train()
    broadcast_parameters(policy, world)
    peak_lr = tc.lr if tc.lr is not None else cfg.lr
    optimizer = torch.optim.AdamW(policy.parameters(), lr=peak_lr, betas=cfg.adam_betas, eps=cfg.adam_eps,
                                  weight_decay=cfg.weight_decay)
    lr_schedule = get_scheduler(cfg.lr_scheduler, optimizer, num_training_steps=tc.num_steps,
                                num_warmup_steps=min(cfg.lr_warmup_steps, tc.num_steps // 10))
    ema = EMA.from_config(policy, cfg)

    rows: list[dict] = []
    best = {"metric": best_metric, "step": None, "success_rate": None}
    start, losses = time.perf_counter(), []
    recent: list[float] = []  # losses since the last curves row

    def log_row(step: int) -> dict:
        row = {"step": step, "wall_s": round(time.perf_counter() - start, 1), "lr": lr_schedule.get_last_lr()[0],
               "train_loss": float(np.mean(recent)) if recent else float("nan"), "ema_decay": ema.decay}
        recent.clear()
        return row

    def run_eval(step: int) -> None:
        nonlocal best
        model = ema.model
        row = log_row(step)
        scored_on = "val" if val_windows else "train"
        row.update({f"{scored_on}_{k}": v for k, v in score_windows(model, score_batch).items()})
        if evaluate is not None:
            row["success_rate"] = float(evaluate(model)["success_rate"])
        losses.clear()
        rows.append(row)
        metric = row["success_rate"] if evaluate is not None else -row[next(k for k in row if k.endswith("action_mse"))]
        if step > 0 and metric >= best["metric"]:  # ties go to the later, longer-averaged weights
            best = {"metric": metric, "step": step, "success_rate": row.get("success_rate")}
            model.save_checkpoint(out / "best", extras)
        model.save_checkpoint(out / "last", extras)
        write_curves(out, rows, [out / "best", out / "last"])
        if progress:
            bar.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))

    bar = tqdm(range(1, tc.num_steps + 1), desc="diffusion", disable=not progress)
    # each rank's share of each global batch, gathered a few batches ahead in a thread
    shares = ((batch, world.share(len(batch))) for batch in epoch_batches(rng, len(windows), tc.batch_size))
    loader = prefetched(lambda share: windows[share[0][share[1]]], shares)
    for step in bar:
        (batch, mine), samples = next(loader)  # a dataset smaller than the batch gives all its windows
        noise = torch.randn((len(batch), cfg.pred_horizon, cfg.action_dim), generator=draw)
        timesteps = torch.randint(0, cfg.num_train_timesteps, (len(batch),), generator=draw)

        loss = policy.compute_loss(samples, noise[mine], timesteps[mine])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        global_loss = average_gradients(policy.parameters(), loss, world)
        optimizer.step()
        lr_schedule.step()
        ema.update(policy)

        losses.append(global_loss)
        recent.append(losses[-1])
        if step == 1:
            first_loss = losses[0]
        if step % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", lr=f"{lr_schedule.get_last_lr()[0]:.1e}")
        if not world.main:
            continue  # rank 0 evaluates and writes
        if step % tc.eval_every == 0 or step == tc.num_steps:
            run_eval(step)
        elif step % tc.log_every == 0:  # the loss between evaluations: the CSV now, the PNG at the next evaluation
            rows.append(log_row(step))
            write_curves(out, rows, plot=False)

    loader.close()
    close_world(world)
    if not world.main:
        return {"rank": world.rank, "steps": tc.num_steps, "first_loss": first_loss}

    deployment = None
    if evaluate is not None and best["step"] is not None and tc.deploy_noise_scales:
        from robot_rl.train.deployment import choose_deployment

        deployment = choose_deployment(out / "best", evaluate, tc.deploy_noise_scales, tc.deploy_action_horizons,
                                       known_success=best["success_rate"], log=bar.write if progress else (lambda s: None))
    summary = {
        "deployment": deployment,
        "episodes": len(train_eps), "held_out_episodes": len(val_eps), "windows": len(windows),
        "steps": tc.num_steps, "wall_s": round(time.perf_counter() - start, 1), "first_loss": first_loss,
        "parameters": policy.num_parameters(), "best_step": best["step"],
        "best_success_rate": best["success_rate"], "best_metric": best["metric"], "final": rows[-1],
        "checkpoint": str(out / "best"),
    }
    (out / "summary.json").write_text(json.dumps({"config": asdict(tc), **summary}, indent=2, default=str))
    final = rows[-1]
    score_key = next(k for k in final if k.endswith("action_mse"))
    best_rate = float("nan") if best["success_rate"] is None else best["success_rate"]  # 0.0 is a score
    success = "" if evaluate is None else (f", success best {best_rate:.2f} at step "
                                           f"{best['step']} (last {final['success_rate']:.2f})")
    if deployment is not None:
        success += (f", deployed at noise {deployment['noise_scale']:g} Ta {deployment['action_horizon']}: "
                    f"{deployment['success_rate']:.2f}")
    print(f"diffusion: {len(train_eps)} episodes, {tc.num_steps} steps in {summary['wall_s']:.0f} s, "
          f"{summary['parameters'] / 1e6:.2f}M parameters, {score_key} {final[score_key]:.4f}{success}; "
          f"checkpoint {out / 'best'}")
    return summary


def write_curves(out: Path, rows: list[dict], copies=(), plot: bool = True) -> None:
    """curves.csv + curves.png (loss, action error, success vs step) in `out` and each copy; a
    row holds what was measured at its step (evaluations: action error and success too)."""
    fields = list(dict.fromkeys(k for r in rows for k in r))
    tmp = out / ".curves.csv.tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(out / "curves.csv")
    if not plot:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("loss", [k for k in fields if k.endswith("loss")]),
              ("action MSE (normalized)", [k for k in fields if k.endswith("action_mse")]),
              ("success rate", [k for k in fields if k == "success_rate"])]
    panels = [(title, keys) for title, keys in panels if keys]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels):
        for k in keys:
            measured = [r for r in rows if k in r]
            ax.plot([r["step"] for r in measured], [r[k] for r in measured], marker="o" if len(measured) < 30 else None,
                    label=k)
        if title != "success rate":
            ax.set_yscale("log")
        else:
            ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("gradient step")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=100)
    plt.close(fig)
    for folder in copies:
        if folder.is_dir():
            for name in ("curves.csv", "curves.png"):
                tmp = folder / f".{name}.tmp"
                tmp.write_bytes((out / name).read_bytes())
                tmp.replace(folder / name)


# --- `robot-rl train diffusion` ---------------------------------------------------------------------
OBS_PRESETS = {"state": ("joint_pos", "ee_pos", "object_poses"), "rgb": ("joint_pos", "ee_pos"),
               "points": ("joint_pos", "ee_pos", "points")}


def obs_keys_for(preset: str, dataset_keys) -> tuple[str, ...]:
    keys = OBS_PRESETS[preset]
    if preset == "rgb":
        cams = tuple(k for k in dataset_keys if is_rgb_key(k))
        if not cams:
            raise DataError("--obs rgb: the dataset has no <cam>_rgb keys (collect with --cameras)")
        keys = keys + cams
    return keys


def env_kwargs_for(cfg: DiffusionConfig, cloud: dict | None = None) -> dict:
    """ArmEnv arguments that produce every observation key the policy reads; `cloud`, the
    record of how its training clouds were made (CLOUD_FILE), gives a points-only policy the
    depth camera's resolution it was trained with."""
    cams = [k[: -len("_rgb")] for k in cfg.rgb_keys]
    kwargs: dict = {}
    if cams:
        h, w = cfg.obs_shapes[cfg.rgb_keys[0]][:2]
        kwargs.update(cameras=tuple(cams), image_size=(w, h))
    if cfg.points_keys:
        kwargs.update(points=True, num_points=cfg.obs_shapes[cfg.points_keys[0]][0],
                      cameras=tuple(kwargs.get("cameras", ())) or ("front",))
        if not cams and (cloud or {}).get("image_size"):
            kwargs["image_size"] = tuple(int(v) for v in cloud["image_size"])
    return kwargs


def add_arguments(parser) -> None:
    d, t = DiffusionConfig(), DiffusionTrainConfig()
    parser.add_argument("--dataset", required=True, help="episode dataset directory")
    parser.add_argument("--obs", choices=sorted(OBS_PRESETS), default="state",
                        help="state: joints + ee + object poses; rgb: joints + ee + every camera; "
                             "points: joints + ee + cloud")
    parser.add_argument("--obs-keys", nargs="+", default=None, help="explicit observation keys (overrides --obs)")
    parser.add_argument("--task", default=None, help="task for evaluation rollouts (default: from the dataset)")
    parser.add_argument("--env", default="", help="evaluate in this gymnasium env instead (a registered id or "
                        "module:Class; dict observation with the dataset's keys, Box actions)")
    parser.add_argument("--out", default=t.out)
    parser.add_argument("--num-steps", type=int, default=t.num_steps)
    parser.add_argument("--batch-size", type=int, default=t.batch_size)
    parser.add_argument("--max-episodes", type=int, default=None)
    parser.add_argument("--all-episodes", action="store_true",
                        help="train on failed episodes too (a generalist of mixed quality); default: successes only")
    parser.add_argument("--val-fraction", type=float, default=t.val_fraction)
    parser.add_argument("--eval-every", type=int, default=t.eval_every)
    parser.add_argument("--log-every", type=int, default=t.log_every, help="a curves.csv row (loss, lr) every this many steps")
    parser.add_argument("--eval-episodes", type=int, default=50, help="simulator episodes per evaluation (0: none)")
    parser.add_argument("--down-dims", type=int, nargs="+", default=list(d.down_dims))
    parser.add_argument("--pointnet-dims", type=int, nargs="+", default=list(d.pointnet_dims),
                        help="point-cloud encoder widths (--obs points)")
    parser.add_argument("--crop-fraction", type=float, default=0.875,
                        help="RGB random-crop size as a fraction of the image (96 -> 84, Chi et al.'s); 1: no crop")
    parser.add_argument("--rgb-widths", type=int, nargs="+", default=list(d.rgb_widths),
                        help=f"RGB ResNet stage widths (--obs rgb), multiples of {d.rgb_group_size}")
    parser.add_argument("--deploy-noise-scales", type=float, nargs="*", default=list(t.deploy_noise_scales),
                        help="after training, evaluate the best checkpoint at these DDIM noise scales and keep "
                             "the best as its default (none: keep the trained 1)")
    parser.add_argument("--deploy-action-horizons", type=int, nargs="*", default=list(t.deploy_action_horizons),
                        help="... and at these Ta (default: the config's only)")
    parser.add_argument("--num-inference-steps", type=int, default=d.num_inference_steps)
    parser.add_argument("--obs-horizon", type=int, default=d.obs_horizon,
                        help="To: observations each chunk conditions on (1: the scene alone must say where to go, "
                             "not the motion of the last step)")
    parser.add_argument("--lr", type=float, default=None, help=f"peak learning rate (default {d.lr:g}; "
                        "a fine-tune keeps its checkpoint's unless given)")
    parser.add_argument("--stream", choices=["auto", "memory", "disk"], default=t.stream,
                        help="images / clouds held in RAM or read from disk per batch (auto: disk when they "
                             "would take more than half the memory available, cgroup limits included)")
    parser.add_argument("--device", default=t.device)
    parser.add_argument("--torch-threads", type=int, default=t.torch_threads)
    parser.add_argument("--seed", type=int, default=t.seed)
    parser.add_argument("--init-checkpoint", default=None, help="fine-tune from this checkpoint folder")
    parser.add_argument("--follow", action="store_true",
                        help="after training, keep fine-tuning as new episodes are committed to the dataset")
    parser.add_argument("--follow-steps", type=int, default=1000, help="gradient steps per batch of new episodes")


def run(args) -> int:
    from robot_rl.cli_checks import at_least, device, output_folder
    from robot_rl.data.dataset import EpisodeDataset
    from robot_rl.data.follow import EpisodeFollower

    device("--device", args.device)
    for flag in ("num_steps", "batch_size", "eval_every", "log_every"):
        at_least(f"--{flag.replace('_', '-')}", getattr(args, flag), 1)
    at_least("--eval-episodes", args.eval_episodes, 0)
    output_folder("--out", args.out)

    if args.follow:  # the recorder may not have committed anything yet
        first = EpisodeFollower(args.dataset, start=0, poll_s=1.0)
        while not first.wait(timeout=None):
            pass
    dataset = EpisodeDataset.open(args.dataset)
    if dataset.num_episodes == 0:
        raise DataError(f"{args.dataset}: no episodes to train on (record or convert some first, or --follow)")
    keys = tuple(args.obs_keys) if args.obs_keys else obs_keys_for(args.obs, dataset.keys)
    missing = [k for k in (*keys, "action") if k not in dataset.keys]
    if missing:
        raise DataError(f"{args.dataset}: no key(s) {missing} (keys: {', '.join(dataset.keys)})")
    if not 0 < args.crop_fraction <= 1:
        raise ConfigError(f"--crop-fraction must be in (0, 1], got {args.crop_fraction}")
    images = [tuple(dataset.keys[k]["shape"][:2]) for k in keys if is_rgb_key(k)]
    crop = None if not images or args.crop_fraction == 1 else tuple(max(1, round(args.crop_fraction * n))
                                                                     for n in images[0])
    policy = DiffusionConfig(obs_keys=keys, obs_shapes={k: tuple(dataset.keys[k]["shape"]) for k in keys},
                             **({"crop_shape": crop} if images else {}),
                             action_dim=int(dataset.keys["action"]["shape"][0]), down_dims=tuple(args.down_dims),
                             pointnet_dims=tuple(args.pointnet_dims), rgb_widths=tuple(args.rgb_widths),
                             num_inference_steps=args.num_inference_steps, obs_horizon=args.obs_horizon,
                             **({} if args.lr is None else {"lr": args.lr}))
    tc = DiffusionTrainConfig(dataset=args.dataset, out=args.out, num_steps=args.num_steps,
                              batch_size=args.batch_size, max_episodes=args.max_episodes,
                              val_fraction=args.val_fraction, eval_every=args.eval_every, seed=args.seed,
                              log_every=args.log_every, stream=args.stream,
                              device=args.device, torch_threads=args.torch_threads,
                              init_checkpoint=args.init_checkpoint, lr=args.lr,
                              successful_only=not args.all_episodes, policy=policy,
                              deploy_noise_scales=tuple(args.deploy_noise_scales),
                              deploy_action_horizons=tuple(args.deploy_action_horizons))
    evaluate = None
    if args.env and args.eval_episodes > 0:
        evaluate = env_evaluator(args.env, args.eval_episodes, policy)
    elif args.eval_episodes > 0:
        task = args.task or (dataset.episode_meta(0).get("task") if dataset.num_episodes else None)
        if not task:
            raise DataError(f"{args.dataset}: episodes carry no task; pass --task or --eval-episodes 0")
        cloud = dataset.episode_meta(0).get("points") if dataset.num_episodes else None
        env_kwargs = env_kwargs_for(config_for_dataset(dataset, policy), cloud)
        if dataset.robot is not None:
            env_kwargs["robot"] = dataset.robot
        evaluate = sim_evaluator(task, args.eval_episodes, env_kwargs=env_kwargs)
    follower = EpisodeFollower(dataset) if args.follow else None  # episodes there now count as seen
    summary = train_diffusion(tc, dataset, evaluate)
    if follower is None:
        return 0
    # Streaming: each batch of newly committed episodes -> a short fine-tuning round from the
    # latest weights (same normalizer), evaluated and checkpointed like the first run.
    print(f"following {args.dataset} from episode {follower.seen}", flush=True)
    while True:
        new = follower.wait(timeout=None)
        if not new:
            continue
        print(f"episodes {new[0]}..{new[-1]} committed: fine-tuning {args.follow_steps} steps", flush=True)
        round_tc = dataclasses.replace(tc, num_steps=args.follow_steps, eval_every=args.follow_steps,
                                       init_checkpoint=str(Path(args.out) / "last"), max_episodes=None,
                                       seed=tc.seed + follower.seen)
        summary = train_diffusion(round_tc, follower.dataset, evaluate, best_metric=summary["best_metric"])
