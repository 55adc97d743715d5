"""The robot-rl command: verbs table, one-line errors, bringup planning (no nodes started)."""
import subprocess
import sys

import pytest

from robot_rl import bringup, cli
from robot_rl.errors import ConfigError
from robot_rl.paths import config_dir, share_dir


def robot_rl(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "robot_rl.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_every_verb_module_has_the_interface():
    import importlib

    for name, (module, help_text) in cli.VERBS.items():
        mod = importlib.import_module(module)
        assert callable(mod.add_arguments) and callable(mod.run), name
        assert help_text


def test_help_lists_verbs():
    r = robot_rl("--help")
    assert r.returncode == 0
    for verb in cli.VERBS:
        assert verb in r.stdout


def test_unknown_graph_is_one_line_exit_2():
    r = robot_rl("bringup", "no_such_graph")
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: no graph 'no_such_graph'; known: {', '.join(sorted(bringup.GRAPHS))}"


def test_param_nobody_declares_is_refused():
    r = robot_rl("bringup", "sim_expert", "--dry-run", "-p", "no_such_param=1")
    assert r.returncode == 2 and "no node of graph 'sim_expert' declares 'no_such_param'" in r.stderr


def test_bringup_plan_uses_params_file_and_overrides():
    planned = dict((spec.name, cmd) for spec, cmd in bringup.plan("sim_expert", ["task=lift", "mujoco_sim.mode=lockstep"]))
    sim, expert = planned["mujoco_sim"], planned["scripted_expert"]
    params = str(config_dir() / "sim_expert.yaml")
    for cmd in (sim, expert):
        assert cmd[cmd.index("--params-file") + 1] == params
        assert "task:=lift" in cmd
    assert sim[1:3] == ["-m", "robot_rl.ros.mujoco_sim_node"]
    assert "mode:=lockstep" in sim and "mode:=lockstep" not in expert


def test_bad_param_syntax():
    with pytest.raises(ConfigError):
        bringup.plan("sim_expert", ["task"])


def test_share_dir_has_the_data_folders():
    root = share_dir()
    assert (root / "urdf" / "arm.urdf").is_file()
    assert (root / "config" / "sim_expert.yaml").is_file()
    assert (root / "launch" / "sim_expert.launch.py").is_file()


def test_episode_runner_executable_has_help():
    r = subprocess.run([sys.executable, "-m", "robot_rl.ros.episode_runner_node", "--help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--num-episodes" in r.stdout
