"""The ROS install path: `colcon build` (Debian's colcon + colcon-ros, ament_python) in a throwaway
workspace, the installed layout a ROS user's `ros2 run` / `ros2 launch` rely on, and an installed
node started from lib/robot_rl with the environment `install/setup.sh` gives, answering over DDS."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger

from ros_helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("package.xml", "setup.py", "setup.cfg", "resource", "robot_rl", "launch", "config", "urdf")
NODES = ("mujoco_sim", "scripted_expert", "episode_runner", "recorder", "diffusion_policy", "offline_trainer",
         "residual_policy", "value_steering", "robot-rl")


@pytest.fixture(scope="module")
def install(tmp_path_factory):
    """A colcon workspace with this checkout in src/, built; its install/ folder."""
    colcon = shutil.which("colcon")
    if colcon is None:
        pytest.skip("colcon is not installed (make setup installs Debian's colcon and python3-colcon-ros)")
    ws = tmp_path_factory.mktemp("ws")
    for name in SOURCES:
        src, dst = ROOT / name, ws / "src" / "robot_rl" / name
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "AMENT_PREFIX_PATH")}
    result = subprocess.run([colcon, "build", "--event-handlers", "console_cohesion+"], cwd=ws, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return ws / "install"


def setup_env(install: Path) -> dict:
    """The variables `. install/setup.sh` sets, as a ROS user's shell has them."""
    out = subprocess.run(["bash", "-c", f". {install}/setup.sh && env -0"], capture_output=True, check=True,
                         env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AMENT_PREFIX_PATH")})
    return dict(line.split("=", 1) for line in out.stdout.decode().split("\0") if "=" in line)


def test_colcon_installs_the_ros_layout(install):
    pkg = install / "robot_rl"
    share = pkg / "share" / "robot_rl"
    assert (pkg / "share" / "ament_index" / "resource_index" / "packages" / "robot_rl").is_file()
    assert (share / "package.xml").read_text() == (ROOT / "package.xml").read_text()
    for folder, pattern in (("launch", "*.launch.py"), ("config", "*"), ("urdf", "*")):
        assert sorted(p.name for p in (share / folder).glob(pattern)) == sorted(p.name for p in (ROOT / folder).glob(pattern))
    for node in NODES:
        exe = pkg / "lib" / "robot_rl" / node
        assert exe.is_file() and os.access(exe, os.X_OK), node
    env = setup_env(install)
    where = subprocess.run([sys.executable, "-c", "import robot_rl, robot_rl.paths as p; print(robot_rl.__file__); "
                            "print(p.share_dir())"], capture_output=True, text=True, env=env, check=True, cwd=install)
    module, share_dir = where.stdout.split()
    assert Path(module).is_relative_to(pkg) and Path(share_dir) == share, where.stdout  # the installed copy


@pytest.mark.integration
def test_an_installed_node_starts_and_answers(install, nodes, probe, monkeypatch):
    """lib/robot_rl/mujoco_sim, run as `ros2 run robot_rl mujoco_sim` would, in the environment
    where robot_rl is the installed copy (previous test); with this Python: the PyPI ROS wheels
    are in its venv, not in the system python the script names."""
    for key, value in setup_env(install).items():
        if key in ("PYTHONPATH", "AMENT_PREFIX_PATH"):
            monkeypatch.setenv(key, value)
    probe.subscribe(JointState, "/joint_states")
    nodes.start("sim", [sys.executable, str(install / "robot_rl" / "lib" / "robot_rl" / "mujoco_sim"),
                        "--ros-args", "-p", "task:=reach"])
    wait_for(lambda: probe.count("/joint_states") >= 5, 60, "joint states from the installed simulator")
    assert probe.call(Trigger, "/sim/reset").success
    assert nodes.stop("sim") == 0
