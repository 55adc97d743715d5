"""Node graphs as data, and `robot-rl bringup <name>`: the launch file's graph without `launch`.

NODES describes every node a params file or launch file may name (robot_rl nodes: module and
config dataclass, whose fields are the parameters). GRAPHS[name] lists the (node, params file)
pairs that `launch/<name>.launch.py` starts; test_launch_files checks the two agree.
`-p robot=ur_arm` switches every node of the graph to that arm (robot_state_publisher gets its
URDF). The deployment settings a residual learned its base with (noise_scale, action_horizon,
recorded in its checkpoint) go to the diffusion_policy node of the same graph, and the residual's
chunk_lead follows the diffusion node's request_lead, unless given explicitly. Bringup runs each node as `python -m <module> --ros-args --params-file
config/<file>` in its own process group, forwards SIGINT/SIGTERM, and stops everything when any
node exits. Nodes from other packages (robot_state_publisher) start only where installed.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from robot_rl import paths
from robot_rl.errors import ConfigError, RobotRLError


@dataclass(frozen=True)
class NodeSpec:
    name: str  # node name, and its key in the params file
    package: str  # ROS package of the executable
    executable: str  # `ros2 run <package> <executable>`; for robot_rl a console script in setup.py
    module: str | None = None  # robot_rl node module (has main() and a config dataclass)
    config: str | None = None  # the config dataclass in `module`
    robot_description: bool = False  # gets the graph's robot's URDF as the robot_description parameter
    external_params: tuple[str, ...] = ()  # parameters a non-robot_rl node declares


NODES: dict[str, NodeSpec] = {spec.name: spec for spec in (
    NodeSpec("robot_state_publisher", "robot_state_publisher", "robot_state_publisher",
             robot_description=True,
             external_params=("robot_description", "publish_frequency", "ignore_timestamp",
                              "frame_prefix", "use_sim_time")),
    NodeSpec("mujoco_sim", "robot_rl", "mujoco_sim", "robot_rl.ros.mujoco_sim_node", "MujocoSimConfig"),
    NodeSpec("scripted_expert", "robot_rl", "scripted_expert", "robot_rl.ros.scripted_expert_node",
             "ScriptedExpertConfig"),
    NodeSpec("recorder", "robot_rl", "recorder", "robot_rl.ros.recorder_node", "RecorderConfig"),
    NodeSpec("diffusion_policy", "robot_rl", "diffusion_policy", "robot_rl.ros.diffusion_policy_node",
             "DiffusionPolicyConfig"),
    NodeSpec("offline_trainer", "robot_rl", "offline_trainer", "robot_rl.ros.offline_trainer_node",
             "OfflineTrainerConfig"),
    NodeSpec("residual_policy", "robot_rl", "residual_policy", "robot_rl.ros.residual_policy_node",
             "ResidualPolicyConfig"),
    NodeSpec("value_steering", "robot_rl", "value_steering", "robot_rl.ros.value_steering_node",
             "ValueSteeringConfig"),
)}

# graph name (= launch/<name>.launch.py) -> ((node, params file in config/ or None), ...)
GRAPHS: dict[str, tuple[tuple[str, str | None], ...]] = {
    "sim_expert": (
        ("robot_state_publisher", "sim_expert.yaml"),
        ("mujoco_sim", "sim_expert.yaml"),
        ("scripted_expert", "sim_expert.yaml"),
    ),
    "sim_diffusion": (
        ("mujoco_sim", "sim_diffusion.yaml"),
        ("diffusion_policy", "sim_diffusion.yaml"),
    ),
    "sim_steering": (
        ("mujoco_sim", "sim_steering.yaml"),
        ("diffusion_policy", "sim_steering.yaml"),
        ("value_steering", "sim_steering.yaml"),
    ),
    "sim_residual": (
        ("mujoco_sim", "sim_residual.yaml"),
        ("diffusion_policy", "sim_residual.yaml"),
        ("residual_policy", "sim_residual.yaml"),
    ),
    "record_demos": (
        ("mujoco_sim", "record_demos.yaml"),
        ("scripted_expert", "record_demos.yaml"),
        ("recorder", "record_demos.yaml"),
    ),
}


def graph_nodes(name: str) -> list[tuple[NodeSpec, str | None]]:
    """(spec, params file) for each node of graph `name`, in start order."""
    if name not in GRAPHS:
        raise ConfigError(f"no graph {name!r}; known: {', '.join(sorted(GRAPHS))}")
    return [(NODES[node], params_file) for node, params_file in GRAPHS[name]]

# Parameters every rclpy/rclcpp node declares itself.
COMMON_PARAMS = ("use_sim_time",)


def declared_params(spec: NodeSpec) -> set[str]:
    """The parameter names a node declares (robot_rl nodes: their config dataclass's fields)."""
    if spec.module is None:
        return set(spec.external_params)
    import importlib

    from robot_rl.ros.params import config_fields

    cls = getattr(importlib.import_module(spec.module), spec.config)
    return set(config_fields(cls)) | set(COMMON_PARAMS)


def _external_executable(spec: NodeSpec) -> str | None:
    try:
        from ament_index_python.packages import get_package_prefix

        path = os.path.join(get_package_prefix(spec.package), "lib", spec.package, spec.executable)
    except Exception:  # not installed, or no ament index at all
        return None
    return path if os.access(path, os.X_OK) else None


def _split_param(text: str) -> tuple[str | None, str, str]:
    """'node.key=value' or 'key=value' -> (node or None, key, value)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"--param wants KEY=VALUE or NODE.KEY=VALUE, got {text!r}")
    node, _, key = key.rpartition(".")
    return node or None, key, value


def plan(name: str, overrides: list[str] = (), tmpdir: str | None = None) -> list[tuple[NodeSpec, list[str] | None]]:
    """(spec, command or None when not installed) for each node of graph `name`."""
    graph = graph_nodes(name)
    declared = {spec.name: declared_params(spec) for spec, _ in graph}
    per_node: dict[str, list[str]] = {spec.name: [] for spec, _ in graph}
    for text in overrides:
        node, key, value = _split_param(text)
        targets = [s.name for s, _ in graph if (node in (None, s.name)) and key in declared[s.name]]
        if not targets:
            raise ConfigError(f"--param {text}: no node of graph {name!r} declares {key!r}")
        for t in targets:
            per_node[t] += ["-p", f"{key}:={value}"]
    _tie_deployment(graph, overrides, per_node)
    commands = []
    for spec, params_file in graph:
        if spec.module is not None:
            cmd = [sys.executable, "-m", spec.module]
        else:
            exe = _external_executable(spec)
            if exe is None:
                commands.append((spec, None))
                continue
            cmd = [exe]
        cmd += ["--ros-args", "-r", f"__node:={spec.name}"]
        if params_file:
            cmd += ["--params-file", str(paths.config_file(params_file))]
        if spec.robot_description:
            import yaml

            urdf = _robot_urdf(overrides)
            extra = os.path.join(tmpdir or tempfile.mkdtemp(prefix="robot_rl_"), f"{spec.name}.yaml")
            with open(extra, "w") as f:
                yaml.safe_dump({spec.name: {"ros__parameters": {"robot_description": urdf}}}, f)
            cmd += ["--params-file", extra]
        commands.append((spec, cmd + per_node[spec.name]))
    return commands


def _given(overrides, node: str, key: str) -> str | None:
    """The value of KEY set for NODE (or for every node) on the command line, if any."""
    value = None
    for text in overrides:
        n, k, v = _split_param(text)
        if k == key and n in (None, node):
            value = v
    return value


def _robot_urdf(overrides) -> str:
    """The URDF text of the graph's robot: `-p robot=...` (a catalog name or a URDF path), else the 7-DoF arm."""
    from robot_rl.robot import load_robot

    spec = _given(overrides, "mujoco_sim", "robot") or "arm"
    return load_robot(spec.strip('"')).urdf


def _tie_deployment(graph, overrides, per_node) -> None:
    """A residual corrects one base: give the diffusion node the settings its checkpoint recorded,
    and the residual node the diffusion node's request_lead as chunk_lead (where not set)."""
    import json

    names = {spec.name for spec, _ in graph}
    if not {"diffusion_policy", "residual_policy"} <= names:
        return
    path = _given(overrides, "residual_policy", "residual_checkpoint")
    recorded = {}
    if path:
        try:
            recorded = json.loads((Path(path.strip('"')) / "config.json").read_text())
        except (OSError, ValueError):
            recorded = {}  # the node itself reports a bad checkpoint in one line
    for key, field in (("noise_scale", "base_noise_scale"), ("action_horizon", "base_action_horizon")):
        if recorded.get(field) is not None and _given(overrides, "diffusion_policy", key) is None:
            per_node["diffusion_policy"] += ["-p", f"{key}:={recorded[field]}"]
    lead = _given(overrides, "diffusion_policy", "request_lead")
    if lead is not None and _given(overrides, "residual_policy", "chunk_lead") is None:
        per_node["residual_policy"] += ["-p", f"chunk_lead:={lead}"]


def _stop(procs: dict[str, subprocess.Popen], grace: float = 5.0) -> None:
    """SIGINT, then SIGTERM, then SIGKILL, each to a node's whole process group."""
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 2.0), (signal.SIGKILL, 1.0)):
        alive = [p for p in procs.values() if p.poll() is None]
        for p in alive:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while any(p.poll() is None for p in alive) and time.monotonic() < deadline:
            time.sleep(0.05)


def bringup(name: str, overrides: list[str] = (), log=None) -> int:
    """Start graph `name`; return when any node exits (its exit code) or on SIGINT/SIGTERM (0)."""
    log = log or (lambda text: print(f"[bringup] {text}", file=sys.stderr, flush=True))
    stop = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signum

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    procs: dict[str, subprocess.Popen] = {}
    with tempfile.TemporaryDirectory(prefix="robot_rl_bringup_") as tmp:
        try:
            for spec, cmd in plan(name, list(overrides), tmp):
                if cmd is None:
                    log(f"skipping {spec.name}: ROS package {spec.package} is not installed")
                    continue
                procs[spec.name] = subprocess.Popen(cmd, start_new_session=True)
                log(f"started {spec.name} (pid {procs[spec.name].pid})")
            code = 0
            while stop["signal"] is None:
                dead = [(n, p.returncode) for n, p in procs.items() if p.poll() is not None]
                if dead:
                    n, code = dead[0]
                    log(f"{n} exited with code {code}; stopping the graph")
                    break
                time.sleep(0.1)
            if stop["signal"] is not None:
                log(f"got {signal.Signals(stop['signal']).name}; stopping the graph")
            return code
        finally:
            _stop(procs)
            for s, handler in old.items():
                signal.signal(s, handler)


# ---------------------------------------------------------------------- CLI verb
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help=f"graph to start: {', '.join(sorted(GRAPHS))}")
    parser.add_argument("--param", "-p", action="append", default=[], metavar="[NODE.]KEY=VALUE",
                        help="override a parameter on every node that declares KEY (or on NODE)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands and exit")


def run(args) -> int:
    if args.dry_run:
        for spec, cmd in plan(args.name, args.param):
            print(f"{spec.name}: " + (" ".join(cmd) if cmd else f"(skipped: {spec.package} not installed)"))
        return 0
    if not isinstance(args.name, str) or args.name not in GRAPHS:
        raise RobotRLError(f"no graph {args.name!r}; known: {', '.join(sorted(GRAPHS))}")
    return bringup(args.name, args.param)
