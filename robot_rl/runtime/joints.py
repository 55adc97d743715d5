"""JointMap: the policy's joint order <-> the controller's, by name (no ROS here).

A checkpoint acts on the joints it was trained on, in its own order (`policy_joints`). On a
user's arm the controller may use other names (`joint_name_map`: checkpoint name -> controller
name, e.g. joint1 -> fr3_joint1) and another order (`controller_joints`, the `joint_names` of the
forward position controller). /joint_states may list extra joints (a head, a mobile base) in any
order. Everything is matched by name; a name that does not match is refused at start, with both
sides in the message.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from robot_rl.errors import ConfigError, DataError


def parse_name_map(entries: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    """["joint1=ur_joint1", ...] (the ROS parameter's form) or a dict -> {checkpoint: controller}."""
    if isinstance(entries, Mapping):
        return {str(k): str(v) for k, v in entries.items()}
    out: dict[str, str] = {}
    for item in entries:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"joint_name_map entry {item!r} must be checkpoint_name=controller_name")
        out[key.strip()] = value.strip()
    if len(set(out.values())) != len(out):
        raise ConfigError(f"joint_name_map maps two checkpoint joints onto one controller joint: {out}")
    return out


class JointMap:
    def __init__(self, policy_joints: Sequence[str], controller_joints: Sequence[str] = (),
                 name_map: Sequence[str] | Mapping[str, str] = ()):
        self.policy_joints = tuple(policy_joints)
        self.name_map = parse_name_map(name_map)
        unknown = [k for k in self.name_map if k not in self.policy_joints]
        if unknown:
            raise ConfigError(f"joint_name_map names {unknown}, which are not joints of the policy "
                              f"{list(self.policy_joints)}")
        # the controller's name of each policy joint, in policy order
        self.mapped = tuple(self.name_map.get(n, n) for n in self.policy_joints)
        self.controller_joints = tuple(controller_joints) or self.mapped
        if sorted(self.controller_joints) != sorted(self.mapped):
            missing = [n for n in self.mapped if n not in self.controller_joints]
            extra = [n for n in self.controller_joints if n not in self.mapped]
            raise ConfigError(
                f"joint_names {list(self.controller_joints)} (the controller's) do not match the policy's joints "
                f"{list(self.policy_joints)}" + (f" mapped to {list(self.mapped)}" if self.name_map else "")
                + f": missing {missing}, not the policy's {extra}; set joint_names to the controller's joints "
                "and joint_name_map (checkpoint_name=controller_name) where the names differ")
        self._to_controller = [self.mapped.index(n) for n in self.controller_joints]
        self._to_policy = [self.controller_joints.index(n) for n in self.mapped]

    def to_controller(self, values) -> np.ndarray:
        """Policy-order values -> controller order."""
        return np.asarray(values)[..., self._to_controller]

    def to_policy(self, values) -> np.ndarray:
        """Controller-order values -> policy order."""
        return np.asarray(values)[..., self._to_policy]

    def from_joint_state(self, names: Sequence[str], position, velocity=()) -> tuple[np.ndarray, np.ndarray]:
        """A JointState's (names, position, velocity) -> (q, v) in policy order. Extra joints are
        ignored; a missing joint or a malformed message raises DataError (the caller holds)."""
        names = list(names)
        position = np.asarray(position, np.float64).reshape(-1)
        velocity = np.asarray(velocity, np.float64).reshape(-1)
        if len(position) != len(names):
            raise DataError(f"{len(names)} names but {len(position)} positions")
        if len(velocity) not in (0, len(names)):
            raise DataError(f"{len(names)} names but {len(velocity)} velocities")
        index = {n: i for i, n in enumerate(names)}
        missing = [n for n in self.mapped if n not in index]
        if missing:
            raise DataError(f"joints {missing} missing from a message with joints {names}")
        at = [index[n] for n in self.mapped]
        q = position[at]
        v = velocity[at] if len(velocity) else np.zeros(len(at))
        if not (np.all(np.isfinite(q)) and np.all(np.isfinite(v))):
            raise DataError(f"non-finite joint positions or velocities for {[n for n, x in zip(self.mapped, q) if not np.isfinite(x)]}")
        return q, v

    def from_points(self, names: Sequence[str], positions) -> np.ndarray:
        """Trajectory points (M, len(names)) given for `names` -> (M, policy joints), by name.
        Extra joints are ignored; a missing joint or wrong sizes raise DataError (non-finite values
        pass: the guard refuses the ticks they would command, and only those)."""
        names = list(names)
        positions = np.asarray(positions, np.float64)
        if positions.ndim != 2 or positions.shape[1] != len(names):
            raise DataError(f"{len(names)} joint names but points of shape {positions.shape}")
        index = {n: i for i, n in enumerate(names)}
        missing = [n for n in self.mapped if n not in index]
        if missing:
            raise DataError(f"joints {missing} missing from a trajectory with joints {names}")
        return positions[:, [index[n] for n in self.mapped]]

    def describe(self) -> str:
        pairs = [f"{p}->{c}" for p, c in zip(self.policy_joints, self.mapped) if p != c]
        return f"controller {list(self.controller_joints)}" + (f", mapped {pairs}" if pairs else "")
