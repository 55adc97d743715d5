"""RobotModel: what every layer needs to know about an arm, read from its URDF.

Built from a URDF file or the `robot_description` string robot_state_publisher publishes: the
arm joints (the movable joints on the chain from the root link to the TCP link), the gripper
joints (movable, non-mimic joints below the arm's last link: one prismatic finger with a mimic,
two fingers, or none), position and velocity limits, the TCP link, a home posture, and the
gripper's open / closed values. A `kinematic_hash` names the kinematics (joint names, types,
origins, axes and limits along the chain and the gripper), so a checkpoint trained on one arm is
recognised on another machine whose URDF differs only in meshes, colours or extra links.

The model is a plain record: `to_dict()` / `from_dict()` round-trip it (URDF text included), so
checkpoints and datasets carry their robot and can rebuild its kinematics anywhere.
"""
from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from robot_rl.errors import ConfigError

MOVABLE = ("revolute", "prismatic", "continuous")
TCP_LINK_NAMES = ("tcp", "tool0", "tool_frame", "tcp_link", "ee_link", "end_effector", "flange")
CONTINUOUS_LIMIT = np.pi  # a continuous joint is guarded to +-pi around zero unless told otherwise


@dataclass(frozen=True)
class Joint:
    name: str
    type: str
    parent: str
    child: str
    lower: float
    upper: float
    velocity: float
    effort: float
    mimic: str | None
    origin: tuple[float, ...]  # xyz + rpy
    axis: tuple[float, float, float]


def parse_joints(root: ET.Element) -> dict[str, Joint]:
    joints = {}
    for j in root.findall("joint"):
        name, kind = j.get("name"), j.get("type", "fixed")
        limit, mimic, origin, axis = j.find("limit"), j.find("mimic"), j.find("origin"), j.find("axis")
        lower = upper = 0.0
        velocity = effort = float("inf")
        if limit is not None:
            lower, upper = float(limit.get("lower", 0.0)), float(limit.get("upper", 0.0))
            velocity = float(limit.get("velocity", "inf"))
            effort = float(limit.get("effort", "inf"))
        if kind == "continuous" and lower == upper:
            lower, upper = -CONTINUOUS_LIMIT, CONTINUOUS_LIMIT
        xyz = [float(v) for v in (origin.get("xyz", "0 0 0") if origin is not None else "0 0 0").split()]
        rpy = [float(v) for v in (origin.get("rpy", "0 0 0") if origin is not None else "0 0 0").split()]
        ax = tuple(float(v) for v in (axis.get("xyz", "1 0 0") if axis is not None else "1 0 0").split())
        joints[name] = Joint(name, kind, j.find("parent").get("link"), j.find("child").get("link"),
                             lower, upper, velocity, effort, mimic.get("joint") if mimic is not None else None,
                             tuple(xyz + rpy), ax)
    return joints


def _read_urdf(source: str | Path) -> tuple[str, str]:
    """(URDF text, where it came from) from a path or an XML string."""
    text = str(source)
    if text.lstrip().startswith("<"):
        return text, "robot_description"
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"{path}: no URDF file here; pass a URDF path or the robot_description XML")
    return path.read_text(), str(path)


@dataclass(frozen=True)
class RobotModel:
    name: str
    urdf: str = field(repr=False)
    arm_joints: tuple[str, ...]
    gripper_joints: tuple[str, ...]
    tcp_link: str
    base_link: str
    lower: np.ndarray = field(repr=False)  # position limits of joint_names
    upper: np.ndarray = field(repr=False)
    velocity: np.ndarray = field(repr=False)  # velocity limits of joint_names (rad/s or m/s)
    effort: np.ndarray = field(repr=False)  # effort limits of joint_names (N m or N)
    home: np.ndarray = field(repr=False)  # a posture in joint_names order
    gripper_open: tuple[float, ...] = ()
    gripper_closed: tuple[float, ...] = ()
    kinematic_hash: str = ""

    # --- building ----------------------------------------------------------------------------
    @classmethod
    def from_urdf(cls, source: str | Path, *, tcp_link: str | None = None, gripper_joints=None,
                  home=None, gripper_open=None, gripper_closed=None, name: str | None = None) -> RobotModel:
        """A robot from a URDF path or robot_description string. Everything not given is inferred:
        the TCP is a link named like one of TCP_LINK_NAMES (else the gripper's parent link, else the
        end of the longest chain); the home posture is the middle of each arm joint's range with the
        gripper open. Raises ConfigError with one line naming the URDF when it cannot decide."""
        text, where = _read_urdf(source)
        try:
            root = ET.fromstring(text)
        except ET.ParseError as e:
            raise ConfigError(f"{where}: not valid URDF XML ({e})") from None
        if root.tag != "robot":
            raise ConfigError(f"{where}: the root element is <{root.tag}>, a URDF has <robot>")
        joints = parse_joints(root)
        links = [l.get("name") for l in root.findall("link")]
        by_child = {j.child: j for j in joints.values()}
        roots = [l for l in links if l not in by_child]
        if len(roots) != 1:
            raise ConfigError(f"{where}: a URDF has one root link, found {roots}")

        def chain(link: str) -> list[Joint]:
            out = []
            while link in by_child:
                out.append(by_child[link])
                link = by_child[link].parent
            return out[::-1]

        def movable(js):
            return [j for j in js if j.type in MOVABLE and j.mimic is None]

        tcp = tcp_link or next((n for n in TCP_LINK_NAMES if n in links), None)
        if tcp is None:  # the deepest link reached through the most movable joints
            tcp = max(links, key=lambda l: (len(movable(chain(l))), len(chain(l))))
        if tcp not in links:
            raise ConfigError(f"{where}: tcp_link {tcp!r} is not a link of the URDF (links: {links})")
        tcp_chain = chain(tcp)
        arm = [j.name for j in movable(tcp_chain)]
        if gripper_joints is None:
            in_chain = {j.name for j in tcp_chain}
            last = joints[arm[-1]].child if arm else roots[0]
            below = {last}
            for j in sorted(joints.values(), key=lambda j: len(chain(j.child))):
                if j.parent in below:
                    below.add(j.child)
            gripper = [j.name for j in movable(joints.values()) if j.name not in in_chain and j.parent in below]
        else:
            gripper = list(gripper_joints)
        arm = [n for n in arm if n not in gripper]
        if not arm:
            raise ConfigError(f"{where}: no movable joint between the root link {roots[0]!r} and tcp_link {tcp!r}")
        names = arm + gripper
        unknown = [n for n in names if n not in joints or joints[n].type not in MOVABLE]
        if unknown:
            raise ConfigError(f"{where}: {unknown} are not movable joints of the URDF")
        lower = np.array([joints[n].lower for n in names])
        upper = np.array([joints[n].upper for n in names])
        velocity = np.array([joints[n].velocity for n in names])
        effort = np.array([joints[n].effort for n in names])
        g_open = tuple(float(v) for v in gripper_open) if gripper_open is not None else tuple(
            float(joints[n].upper if joints[n].type == "prismatic" else joints[n].lower) for n in gripper)
        g_closed = tuple(float(v) for v in gripper_closed) if gripper_closed is not None else tuple(
            float(joints[n].lower if joints[n].type == "prismatic" else joints[n].upper) for n in gripper)
        if home is None:
            home = np.concatenate([0.5 * (lower[:len(arm)] + upper[:len(arm)]), g_open])
        home = np.asarray(home, float).reshape(-1)
        if home.shape != (len(names),):
            raise ConfigError(f"{where}: home has {home.size} values for the {len(names)} joints {names}")
        kin = [joints[n] for n in dict.fromkeys([j.name for j in tcp_chain] + gripper)]
        digest = hashlib.sha256(json.dumps([[j.name, j.type, j.parent, j.child, j.origin, j.axis, j.lower, j.upper]
                                            for j in kin]).encode()).hexdigest()[:16]
        return cls(name or root.get("name", "robot"), text, tuple(arm), tuple(gripper), tcp, roots[0],
                   lower, upper, velocity, effort, home, g_open, g_closed, digest)

    # --- what the other layers ask -----------------------------------------------------------
    @property
    def joint_names(self) -> tuple[str, ...]:
        """The robot's joint order: arm joints from base to tip, then the gripper joint(s)."""
        return self.arm_joints + self.gripper_joints

    @property
    def num_arm(self) -> int:
        return len(self.arm_joints)

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    def links(self) -> tuple[str, ...]:
        return tuple(l.get("name") for l in ET.fromstring(self.urdf).findall("link"))

    def joints(self) -> dict[str, Joint]:
        """Every joint of the URDF (fixed and mimic ones too), by name."""
        return parse_joints(ET.fromstring(self.urdf))

    def is_gripper(self) -> np.ndarray:
        """(num_joints,) bool mask of the gripper joints in joint_names order."""
        return np.arange(self.num_joints) >= self.num_arm

    def joint_limits(self) -> tuple[np.ndarray, np.ndarray]:
        return self.lower.copy(), self.upper.copy()

    def max_step(self, dt: float, fraction: float = 1.0) -> np.ndarray:
        """Largest change per control period the URDF's velocity limits allow (joint_names order)."""
        step = np.asarray(self.velocity, float) * float(dt) * float(fraction)
        span = self.upper - self.lower
        return np.where(np.isfinite(step) & (step > 0), step, span)

    def gripper_command(self, opening: float) -> np.ndarray:
        """Gripper joint targets for an opening in [0 closed, 1 open]."""
        o, c = np.array(self.gripper_open), np.array(self.gripper_closed)
        return c + float(opening) * (o - c)

    # --- a record checkpoints and datasets carry ---------------------------------------------
    def describe(self) -> dict:
        """The short form (no URDF text): what an error message or a status shows."""
        return {"name": self.name, "joint_names": list(self.joint_names), "gripper_joints": list(self.gripper_joints),
                "tcp_link": self.tcp_link, "kinematic_hash": self.kinematic_hash}

    def to_dict(self) -> dict:
        return {**self.describe(), "arm_joints": list(self.arm_joints), "home": self.home.tolist(),
                "gripper_open": list(self.gripper_open), "gripper_closed": list(self.gripper_closed),
                "urdf": self.urdf}

    @classmethod
    def from_dict(cls, d: dict, where: str = "robot record") -> RobotModel:
        try:
            robot = cls.from_urdf(d["urdf"], tcp_link=d["tcp_link"], gripper_joints=d["gripper_joints"],
                                  home=d["home"], gripper_open=d["gripper_open"],
                                  gripper_closed=d["gripper_closed"], name=d["name"])
        except (KeyError, TypeError) as e:
            raise ConfigError(f"{where}: not a robot record ({type(e).__name__}: {e})") from None
        if list(robot.joint_names) != list(d.get("joint_names", robot.joint_names)):
            raise ConfigError(f"{where}: joint_names {d.get('joint_names')} disagree with its URDF's {list(robot.joint_names)}")
        return robot

    def same_kinematics(self, other: RobotModel) -> bool:
        return self.kinematic_hash == other.kinematic_hash

    def __eq__(self, other):  # arrays make the generated one ambiguous
        return isinstance(other, RobotModel) and self.to_dict() == other.to_dict()

    def __hash__(self):
        return hash((self.name, self.kinematic_hash))
