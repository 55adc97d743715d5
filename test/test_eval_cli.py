"""`robot-rl eval`: a real (tiny, untrained) checkpoint rolled out in MuJoCo, and its Ta override."""
import json
import subprocess
import sys

import pytest

from test_diffusion_checkpoint import make_policy

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def robot_rl_eval(*args):
    return subprocess.run([sys.executable, "-m", "robot_rl.cli", "eval", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("eval") / "ckpt"
    make_policy().save_checkpoint(path)
    return path


def test_eval_reports_success_and_the_action_horizon_it_ran_with(checkpoint, tmp_path):
    out = tmp_path / "eval.json"
    r = robot_rl_eval("--task", "push", "--policy", checkpoint, "--num-episodes", 2, "--seed", 5,
                      "--action-horizon", 4, "--out", out)
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    assert json.loads(r.stdout.strip().splitlines()[-1]) == result
    assert result["action_horizon"] == 4 and result["episodes"] == 2
    assert [row["variant"] for row in result["rows"]] == ["base"]
    assert 0.0 <= result["base_success"] <= 1.0


def test_eval_default_keeps_the_checkpoints_action_horizon(checkpoint):
    r = robot_rl_eval("--task", "push", "--policy", checkpoint, "--num-episodes", 1)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["action_horizon"] == 8


@pytest.mark.parametrize("policy", ["ckpt", "expert:push"])
def test_eval_bad_action_horizon_is_one_line_exit_2(checkpoint, policy):
    r = robot_rl_eval("--task", "push", "--policy", checkpoint if policy == "ckpt" else policy,
                      "--num-episodes", 1, "--action-horizon", 99)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1
    assert "action_horizon" in r.stderr or "action-horizon" in r.stderr


def test_eval_reports_the_noise_scale_it_ran_with(checkpoint):
    for flags, expected in (([], 1.0), (["--noise-scale", 0], 0.0)):
        r = robot_rl_eval("--task", "push", "--policy", checkpoint, "--num-episodes", 1, *flags)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout.strip().splitlines()[-1])["noise_scale"] == expected


def test_eval_refuses_a_checkpoint_of_another_task_or_robot_in_one_line(checkpoint, tmp_path):
    """A push checkpoint (two object poses) on reach (one), a push residual on lift, and a 7-DoF
    checkpoint on the 6-DoF arm: one line naming both sides, exit 2, before any rollout."""
    from robot_rl.policies.residual.config import ResidualConfig
    from robot_rl.policies.residual.model import ResidualActor, ResidualPolicy, default_normalizer

    r = robot_rl_eval("--task", "reach", "--policy", checkpoint, "--num-episodes", 1)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "object_poses (2, 7) (trained) vs (1, 7)" in r.stderr
    from arms import ARM

    policy = make_policy()
    policy.robot = ARM  # trained on the 7-DoF arm: robot.json records it
    policy.save_checkpoint(tmp_path / "arm_ckpt")
    r = robot_rl_eval("--task", "push", "--policy", tmp_path / "arm_ckpt", "--robot", "ur_arm", "--num-episodes", 1)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "'arm'" in r.stderr and "'ur_arm'" in r.stderr and "shoulder_pan_joint" in r.stderr
    cfg = ResidualConfig(actor_hidden=8)  # push: joint_pos, joint_vel, ee_pos and two object poses
    ResidualPolicy(None, ResidualActor(33, cfg, default_normalizer(33)), cfg).save(tmp_path / "residual")
    r = robot_rl_eval("--task", "lift", "--policy", "expert:lift", "--residual", tmp_path / "residual",
                      "--num-episodes", 1)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "trained on 33 observation values" in r.stderr and "gives 26" in r.stderr


@pytest.mark.parametrize("policy, scale", [("ckpt", -1), ("expert:push", 0)])
def test_eval_bad_noise_scale_is_one_line_exit_2(checkpoint, policy, scale):
    r = robot_rl_eval("--task", "push", "--policy", checkpoint if policy == "ckpt" else policy,
                      "--num-episodes", 1, "--noise-scale", scale)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "noise_scale" in r.stderr


def test_eval_runs_the_base_a_residual_was_trained_on(checkpoint, tmp_path):
    """A residual learned on the deterministic base at Ta 2 is evaluated on it unless told otherwise."""
    from robot_rl.policies.residual.config import ResidualConfig
    from robot_rl.policies.residual.model import ResidualActor, ResidualPolicy, default_normalizer

    cfg = ResidualConfig(actor_hidden=8)  # push: joint_pos, joint_vel, ee_pos and two object poses
    actor = ResidualActor(8 + 8 + 3 + 14, cfg, default_normalizer(33))
    ResidualPolicy(None, actor, cfg).save(tmp_path / "residual", extra={"base_noise_scale": 0.0, "base_action_horizon": 2})
    for flags, expected in (([], (0.0, 2)), (["--noise-scale", 1, "--action-horizon", 3], (1.0, 3))):
        r = robot_rl_eval("--task", "push", "--policy", checkpoint, "--residual", tmp_path / "residual",
                          "--num-episodes", 1, *flags)
        assert r.returncode == 0, r.stderr
        result = json.loads(r.stdout.strip().splitlines()[-1])
        assert (result["noise_scale"], result["action_horizon"]) == expected
        assert [row["variant"] for row in result["rows"]] == ["base", "base + residual"]


def test_train_residual_refuses_a_base_of_another_robot_in_one_line(tmp_path):
    from arms import ARM

    policy = make_policy()
    policy.robot = ARM
    policy.save_checkpoint(tmp_path / "arm_ckpt")
    r = subprocess.run([sys.executable, "-m", "robot_rl.cli", "train", "residual", "--base", str(tmp_path / "arm_ckpt"),
                        "--task", "push", "--robot", "ur_arm", "--total-env-steps", "10", "--out", str(tmp_path / "r")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "trained on robot 'arm'" in r.stderr and "'ur_arm'" in r.stderr


def test_bad_arguments_are_refused_before_any_work(checkpoint, tmp_path):
    """Each used to be a traceback, or a silent nonsense result, some after the whole evaluation."""
    r = robot_rl_eval("--task", "push", "--policy", checkpoint, "--num-episodes", -3)
    assert r.returncode == 2 and r.stderr.strip() == "error: --num-episodes must be >= 1, got -3"
    r = robot_rl_eval("--task", "push", "--policy", checkpoint, "--num-episodes", 1, "--num-samples", 0,
                      "--value", checkpoint)
    assert r.returncode == 2 and r.stderr.strip() == "error: --num-samples must be >= 1, got 0"
    # --value with a diffusion checkpoint: refused before the base runs a single episode
    r = robot_rl_eval("--task", "push", "--policy", checkpoint, "--num-episodes", 1, "--value", checkpoint)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "is not a value policy" in r.stderr and "success" not in r.stdout
    # --out in a folder that does not exist yet: created first, the result is written
    out = tmp_path / "new" / "folder" / "eval.json"
    r = robot_rl_eval("--task", "push", "--policy", checkpoint, "--num-episodes", 1, "--out", out)
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["episodes"] == 1
    (tmp_path / "file").write_text("")
    r = robot_rl_eval("--task", "push", "--policy", checkpoint, "--num-episodes", 1, "--out", tmp_path / "file" / "x.json")
    assert r.returncode == 2 and r.stderr.startswith("error: --out ") and "success" not in r.stdout


def test_trainers_refuse_an_empty_dataset_and_a_missing_device(tmp_path):
    from robot_rl.data.dataset import EpisodeDataset

    EpisodeDataset.create(tmp_path / "empty", {"joint_names": [f"joint{i}" for i in range(1, 8)] + ["finger_joint"],
                                               "rate_hz": 10.0})
    for verb in ("value", "diffusion"):
        r = subprocess.run([sys.executable, "-m", "robot_rl.cli", "train", verb, "--dataset", tmp_path / "empty",
                            "--out", tmp_path / "out"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "no episodes" in r.stderr
    import torch

    if not torch.cuda.is_available():
        r = subprocess.run([sys.executable, "-m", "robot_rl.cli", "train", "diffusion", "--dataset", tmp_path / "empty",
                            "--device", "cuda"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and "--device: device cuda requested but CUDA is not available" in r.stderr


def test_eval_report_has_every_seed_a_plot_and_videos_of_the_first_failures(tmp_path):
    """`--report DIR`: success and length per seed for each variant, the PNG, and each filmed failure
    is that seed's episode again (its length matches the evaluation's)."""
    import imageio.v3 as iio

    report = tmp_path / "report"
    r = robot_rl_eval("--task", "reach", "--policy", "expert:reach:poor", "--num-episodes", 8, "--seed", 0,
                      "--report", report, "--report-videos", 2)
    assert r.returncode == 0, r.stderr
    data = json.loads((report / "report.json").read_text())
    base = data["variants"]["base"]
    assert data["seeds"] == list(range(8)) and len(base["successes"]) == len(base["lengths"]) == 8
    assert base["success_rate"] == sum(base["successes"]) / 8 == json.loads(r.stdout.splitlines()[-1])["base_success"]
    failed = [s for s, ok in zip(data["seeds"], base["successes"]) if not ok][:2]
    assert failed, "the poor expert fails on some of these seeds"
    assert sorted(base["failure_videos"]) == sorted(map(str, failed))
    for seed in failed:
        frames = iio.imread(report / base["failure_videos"][str(seed)], index=None)
        assert len(frames) == base["lengths"][seed] + 1  # the first frame, then one per step
    assert (report / "success_over_seeds.png").stat().st_size > 0
