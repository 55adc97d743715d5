"""Launch files and params files, checked statically (ast + yaml; no `launch`, no ROS graph).

Every launch file must name executables that exist (robot_rl: console_scripts in setup.py;
others: an exec_depend in package.xml), params files that exist in config/, parameter keys the
nodes declare, and the same node graph as robot_rl.bringup.GRAPHS, which `robot-rl bringup`
runs without `launch`.
"""
from __future__ import annotations

import ast
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from robot_rl.bringup import GRAPHS, NODES, declared_params, graph_nodes
from robot_rl.ros.params import coerce, config_fields

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))
PARAMS_FILES = sorted((ROOT / "config").glob("*.yaml"))


def console_scripts() -> set[str]:
    """Names of the console_scripts in setup.py, read from its syntax tree."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    return {ast.literal_eval(e).split("=")[0].strip() for e in value.elts}
    raise AssertionError("setup.py has no console_scripts")


def exec_depends() -> set[str]:
    return {e.text for e in ET.parse(ROOT / "package.xml").getroot().iter("exec_depend")}


def launch_nodes(path: Path) -> list[dict]:
    """Each Node(...) call: its literal keywords, and the dict-literal keys in `parameters`."""
    out = []
    for call in ast.walk(ast.parse(path.read_text())):
        if isinstance(call, ast.Call) and getattr(call.func, "id", getattr(call.func, "attr", None)) == "Node":
            kw = {k.arg: k.value for k in call.keywords}
            info = {k: ast.literal_eval(kw[k]) for k in ("package", "executable", "name") if k in kw}
            keys = set()
            if "parameters" in kw:
                for d in ast.walk(kw["parameters"]):
                    if isinstance(d, ast.Dict):
                        keys |= {ast.literal_eval(k) for k in d.keys}
            info["param_keys"] = keys
            out.append(info)
    return out


def yaml_files_named(path: Path) -> set[str]:
    return {n.value for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.endswith(".yaml")}


def test_there_are_launch_files_and_graphs():
    assert LAUNCH_FILES, "no launch/*.launch.py"
    assert {p.name.removesuffix(".launch.py") for p in LAUNCH_FILES} == set(GRAPHS)


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_matches_graph_and_exists(path):
    nodes = launch_nodes(path)
    assert nodes, f"{path.name} starts no Node"
    scripts, deps = console_scripts(), exec_depends()
    graph = graph_nodes(path.name.removesuffix(".launch.py"))
    assert [(n["package"], n["executable"], n["name"]) for n in nodes] == \
           [(s.package, s.executable, s.name) for s, _ in graph], f"{path.name} and bringup.GRAPHS differ"
    for n in nodes:
        if n["package"] == "robot_rl":
            assert n["executable"] in scripts, f"{path.name}: no console script {n['executable']!r} in setup.py"
        else:
            assert n["package"] in deps, f"{path.name}: {n['package']} is not an exec_depend in package.xml"
    for (spec, _), n in zip(graph, nodes):
        unknown = n["param_keys"] - declared_params(spec)
        assert not unknown, f"{path.name}: {n['name']} does not declare {sorted(unknown)}"
    for name in yaml_files_named(path):
        assert (ROOT / "config" / name).is_file(), f"{path.name} names config/{name}, which does not exist"
    assert yaml_files_named(path) == {f for _, f in graph if f}


@pytest.mark.parametrize("path", PARAMS_FILES, ids=lambda p: p.name)
def test_params_file_keys_are_declared_with_the_right_types(path):
    data = yaml.safe_load(path.read_text())
    specs = NODES
    for node, body in data.items():
        assert node in specs, f"{path.name}: unknown node {node!r}; add it to robot_rl.bringup.NODES"
        assert set(body) == {"ros__parameters"}, f"{path.name}: {node} needs exactly ros__parameters"
        params = body["ros__parameters"]
        unknown = set(params) - declared_params(specs[node])
        assert not unknown, f"{path.name}: {node} does not declare {sorted(unknown)}"
        spec = specs[node]
        if spec.module is not None:
            import importlib

            cls = getattr(importlib.import_module(spec.module), spec.config)
            fields = config_fields(cls)
            values = {}
            for key, value in params.items():
                if key in fields:
                    values[key] = coerce(fields[key][0], value, key)
            cls(**values)  # the file's values pass the config's own validation


def test_graph_params_files_and_executables_exist():
    for name in GRAPHS:
        for _, params_file in graph_nodes(name):
            if params_file:
                assert (ROOT / "config" / params_file).is_file()
    for spec in NODES.values():
        if spec.package == "robot_rl":
            assert spec.executable in console_scripts(), spec.name
            assert spec.module and spec.config, spec.name
        else:
            assert spec.package in exec_depends(), spec.name


def test_setup_installs_data_and_marker():
    text = (ROOT / "setup.py").read_text()
    for needle in ("launch/*.launch.py", "config/*.yaml", "urdf/*", "resource/", "package.xml"):
        assert needle in text
    assert (ROOT / "resource" / "robot_rl").is_file()
    cfg = (ROOT / "setup.cfg").read_text()
    assert "script_dir=$base/lib/robot_rl" in cfg and "install_scripts=$base/lib/robot_rl" in cfg
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.find("export/build_type").text == "ament_python"
    assert {"rclpy", "std_msgs", "sensor_msgs", "geometry_msgs", "trajectory_msgs", "std_srvs",
            "rosgraph_msgs", "builtin_interfaces", "robot_state_publisher"} <= exec_depends()
