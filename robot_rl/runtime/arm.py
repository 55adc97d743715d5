"""The arm a commanding node drives, without ROS: which robot, which joints by which names, the
guard, and forward kinematics for the end-effector keys.

Every commanding node (diffusion_policy, residual_policy, value_steering, scripted_expert) takes
the same parameters (ArmConfig) and builds one ArmInterface from them and the policy it runs:
- `robot`: the arm (a catalog name, a URDF path, or the robot_description XML); empty: the robot
  the checkpoint was trained on. A checkpoint of another robot is refused at start;
- `joint_names`: the controller's joint order (the commands' order); empty: the policy's;
- `joint_name_map`: checkpoint_name=controller_name pairs, where the controller names differ;
- `max_step` / `gripper_max_step`: the largest change per tick; 0: the URDF's velocity limits
  times the control period.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from robot_rl.errors import ConfigError
from robot_rl.policies.fit import check_robot
from robot_rl.robot import RobotModel, load_robot
from robot_rl.robot.kinematics import kinematics_for
from robot_rl.runtime.joints import JointMap, parse_name_map
from robot_rl.runtime.safety import STARTUP_TICKS, CommandGuard, GuardResult, guard_for_robot


@dataclass
class ArmConfig:
    robot: str = field(default="", metadata={"help": "the arm: a catalog name (arm, ur_arm), a URDF path or the robot_description XML; empty: the checkpoint's robot"})
    joint_names: tuple[str, ...] = field(default=(), metadata={"help": "the controller's joint order (commands go out in it); empty: the policy's joints"})
    joint_name_map: tuple[str, ...] = field(default=(), metadata={"help": "checkpoint_name=controller_name for every joint whose controller name differs"})
    max_step: float = field(default=0.0, metadata={"help": "largest arm joint change per tick (rad); 0: URDF velocity limit x control period"})
    gripper_max_step: float = field(default=0.0, metadata={"help": "largest gripper change per tick (m); 0: URDF velocity limit x control period"})

    def __post_init__(self):
        if self.max_step < 0 or self.gripper_max_step < 0:
            raise ConfigError("max_step and gripper_max_step must be >= 0 (0: from the URDF)")
        parse_name_map(self.joint_name_map)  # validated at start


class ArmInterface:
    def __init__(self, robot: RobotModel, joints: JointMap, guard: CommandGuard):
        self.robot, self.joints, self.guard = robot, joints, guard
        self._arm = [joints.policy_joints.index(n) for n in robot.arm_joints if n in joints.policy_joints]

    @classmethod
    def build(cls, config: ArmConfig, dt: float, trained: RobotModel | None = None,
              policy_joints=(), what: str = "the policy", startup: bool = True) -> ArmInterface:
        """From the node's ArmConfig and the policy: `trained` is the robot its checkpoint records,
        `policy_joints` its joint order (default: the robot's). `startup` False: the guard of a
        node that sends whole trajectories (no start-up bound on their later points)."""
        robot = load_robot(config.robot) if config.robot else (trained or load_robot())
        check_robot(trained, robot, what)
        policy_joints = tuple(policy_joints) or robot.joint_names
        foreign = [n for n in policy_joints if n not in robot.joint_names]
        if foreign:
            raise ConfigError(f"{what} acts on joints {foreign}, which robot {robot.name!r} does not have "
                              f"({list(robot.joint_names)})")
        joints = JointMap(policy_joints, config.joint_names, config.joint_name_map)
        guard = guard_for_robot(robot, joints, dt, config.max_step, config.gripper_max_step,
                                STARTUP_TICKS if startup else 0)
        return cls(robot, joints, guard)

    def joint_state(self, names, position, velocity=()) -> tuple[np.ndarray, np.ndarray]:
        """A joint state message's fields -> (q, v) in the policy's order (DataError when unusable)."""
        return self.joints.from_joint_state(names, position, velocity)

    def ee_pose(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """TCP position and quaternion (w, x, y, z) for joint positions in the policy's order."""
        q_arm = np.asarray(q, float)[self._arm]
        pos, quat = kinematics_for(self.robot).tcp_pose(q_arm)
        return pos.astype(np.float32), quat.astype(np.float32)

    def reset_guard(self, q: np.ndarray) -> None:
        """Measured joint positions (policy order) become the guard's reference."""
        self.guard.reset(self.joints.to_controller(q))

    def observe(self, q: np.ndarray) -> None:
        """This tick's measured joint positions (policy order), for the guard's start-up bound."""
        self.guard.observe(self.joints.to_controller(q))

    def command(self, action: np.ndarray) -> GuardResult:
        """A policy-order action through the guard; the result is in the controller's order."""
        action = np.asarray(action, np.float64).reshape(-1)
        if action.shape != (len(self.joints.policy_joints),):
            return self.guard.apply(action)  # the guard refuses the wrong length with its message
        return self.guard.apply(self.joints.to_controller(action))

    def to_policy(self, command: np.ndarray) -> np.ndarray:
        return self.joints.to_policy(command)

    def describe(self) -> str:
        steps = ", ".join(f"{n} {s:.3f}" for n, s in zip(self.guard.joint_names, self.guard.max_step))
        return f"robot {self.robot.name!r}, {self.joints.describe()}, max step per tick: {steps}"
