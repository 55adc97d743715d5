"""The arms this package ships (urdf/), and `load_robot`: one way to name a robot anywhere.

A spec is a catalog name (`arm`, `ur_arm`), a URDF path, or a robot_description XML string.
The catalog adds what a URDF cannot say: the TCP link and the home posture the tasks start from.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

from robot_rl.errors import ConfigError
from robot_rl.paths import urdf_dir
from robot_rl.robot.model import RobotModel

DEFAULT_ROBOT = "arm"
CATALOG = {
    # 7-DoF Panda-like arm, one prismatic finger (a mimic joint moves the other), 0.04 m = open.
    # Home: the Panda "ready" posture; the end effector points down above the table.
    "arm": dict(urdf="arm.urdf", tcp_link="tcp", home=(0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785, 0.04)),
    # 6-DoF UR-like arm (UR5e dimensions, UR joint names), a parallel gripper of two fingers.
    # Home: the gripper points down 0.3 m above the table at x = 0.4 (elbow up), as the 7-DoF arm.
    "ur_arm": dict(urdf="ur_arm.urdf", tcp_link="tcp",
                   home=(-0.3353, -1.8393, 1.9134, -1.6447, -1.5712, -1.9056, 0.04, 0.04)),
}


_registered: dict[str, RobotModel] = {}  # robots met in checkpoints and datasets, by name


def register_robot(robot: RobotModel, where: str = "") -> RobotModel:
    """Make `robot` known by its name in this process (a checkpoint or dataset brought it). A name
    already known with other kinematics is refused: one name, one robot."""
    known = _registered.get(robot.name) or (load_robot(robot.name) if robot.name in CATALOG else None)
    if known is not None and not known.same_kinematics(robot):
        raise ConfigError(f"{where or 'robot record'}: robot {robot.name!r} has kinematics {robot.kinematic_hash}, "
                          f"but {robot.name!r} here is {known.kinematic_hash}; rename one of them")
    _registered.setdefault(robot.name, robot)
    return _registered[robot.name] if robot.name in _registered else robot


def load_robot(spec: "str | RobotModel" = DEFAULT_ROBOT) -> RobotModel:
    """A catalog or registered name, a URDF path or a robot_description string -> RobotModel."""
    if isinstance(spec, RobotModel):
        return spec
    spec = str(spec)
    if spec in _registered:
        return _registered[spec]
    return _load(spec)


@functools.lru_cache(maxsize=16)
def _load(spec: str) -> RobotModel:
    if spec in CATALOG:
        entry = CATALOG[spec]
        return RobotModel.from_urdf(urdf_dir() / entry["urdf"], tcp_link=entry["tcp_link"],
                                    home=entry["home"], name=spec)
    if spec.lstrip().startswith("<") or spec.endswith(".urdf") or "/" in spec:
        robot = RobotModel.from_urdf(spec)
        _registered.setdefault(robot.name, robot)  # later lookups by name (configs record the name)
        return robot
    raise ConfigError(f"unknown robot {spec!r}: use one of {sorted(CATALOG) + sorted(_registered)}, "
                      "a URDF path or robot_description XML")


def write_robot_file(robot: RobotModel, file: Path, **extra) -> None:
    """robot.json: the robot record (URDF included) a checkpoint or dataset carries."""
    Path(file).write_text(json.dumps({**robot.to_dict(), **extra}, indent=1))


def read_robot_file(file: Path) -> RobotModel | None:
    """The robot recorded in `file` (robot.json), registered by name; None when there is no file.
    A file that is not a robot record raises ConfigError naming it."""
    file = Path(file)
    if not file.is_file():
        return None
    try:
        raw = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{file}: not a readable robot record ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: a robot record is a JSON object")
    raw.pop("save_id", None)
    return register_robot(RobotModel.from_dict(raw, str(file)), str(file))


def robot_for_joints(joint_names) -> RobotModel | None:
    """The catalog robot whose joint_names are exactly these (data recorded before datasets
    carried robot.json), else None."""
    names = tuple(joint_names)
    return next((load_robot(n) for n in CATALOG if load_robot(n).joint_names == names), None)


def default_robot() -> RobotModel:
    return load_robot(DEFAULT_ROBOT)
