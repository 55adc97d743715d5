"""mujoco_sim: the simulated arm behind the same topics as a ros2_control arm.

Publishes joint states, cameras, object poses, reward, success and /clock; takes forward
position commands and joint trajectories, every one through CommandGuard; /sim/reset starts a
new episode with the next seed. `mode: realtime` steps on a wall-clock timer at the control rate;
`mode: lockstep` steps as soon as the tick's command arrives (or after `lockstep_timeout`,
holding the last command), so the loop runs as fast as the slowest commander.

Lock-step counts observations published and commands received: a commander answers each
observation once, so a command that arrives while newer observations are still unanswered is
a late answer to an older one (e.g. sent just before a reset). It becomes the held target but
does not step the sim; otherwise a second command token would circulate forever and every
command would act one tick late. A step kicked by the last answer before a reset and run after it
is not taken (the reset's first observation is unanswered): the new episode's first frame would
have no command of its own.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np
from rclpy.clock import Clock, ClockType
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from geometry_msgs.msg import PoseArray
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import CameraInfo, Image, JointState, PointCloud2
from std_msgs.msg import Bool, Float32, Float64MultiArray, Header
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from robot_rl.runtime.control import TrajectoryFollower
from robot_rl.errors import CommandError, ConfigError, DataError
from robot_rl.ros.base_node import BaseNode
from robot_rl.ros import msgs
from robot_rl.ros.params import declare_config
from robot_rl.ros.spin import run_node
from robot_rl.runtime.joints import JointMap
from robot_rl.runtime.safety import guard_for_robot
from robot_rl.robot import load_robot

MODES = ("realtime", "lockstep")
STAMP_WINDOW = 5.0  # s: a trajectory stamp further from sim time than this starts now
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


@dataclass
class MujocoSimConfig:
    task: str = field(default="reach", metadata={"help": "task: reach, push or lift"})
    seed: int = field(default=0, metadata={"help": "seed of the first episode; the i-th /sim/reset uses seed + i"})
    mode: str = field(default="realtime", metadata={"help": "realtime (wall-clock timer) or lockstep (step when commanded)"})
    real_time_factor: float = field(default=1.0, metadata={"help": "realtime mode: sim seconds per wall second"})
    lockstep_timeout: float = field(default=0.5, metadata={"help": "lockstep mode: wall seconds to wait for a command before stepping with the held one"})
    control_dt: float = field(default=0.1, metadata={"help": "control period in sim seconds (physics substeps inside)"})
    robot: str = field(default="arm", metadata={"help": "the simulated arm: arm (7-DoF, Panda-like), ur_arm (6-DoF, UR-like) or a URDF path"})
    joint_names: tuple[str, ...] = field(default=(), metadata={"help": "joint order of Float64MultiArray commands; empty: the robot's"})
    max_step: float = field(default=0.0, metadata={"help": "largest arm joint change per tick (rad) the driver lets through; 0: URDF velocity limit x control_dt"})
    gripper_max_step: float = field(default=0.0, metadata={"help": "largest gripper change per tick (m); 0: URDF velocity limit x control_dt"})
    cameras: tuple[str, ...] = field(default=(), metadata={"help": "cameras to publish: front, wrist"})
    image_width: int = field(default=96, metadata={"help": "camera image width (px)"})
    image_height: int = field(default=96, metadata={"help": "camera image height (px)"})
    depth: bool = field(default=False, metadata={"help": "publish depth images (32FC1, metres)"})
    points: bool = field(default=False, metadata={"help": "publish a point cloud from the first camera"})
    num_points: int = field(default=512, metadata={"help": "points per cloud after downsampling"})
    frame_id: str = field(default="world", metadata={"help": "frame of poses, joint states and points"})
    publish_clock: bool = field(default=True, metadata={"help": "publish sim time on /clock"})

    def __post_init__(self):
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {self.mode!r}")
        for name in ("real_time_factor", "lockstep_timeout", "control_dt"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.max_step < 0 or self.gripper_max_step < 0:
            raise ConfigError("max_step and gripper_max_step must be >= 0 (0: from the URDF)")
        if self.image_width <= 0 or self.image_height <= 0 or self.num_points <= 0:
            raise ConfigError("image_width, image_height and num_points must be > 0")
        robot = load_robot(self.robot)
        self.joint_names = tuple(self.joint_names) or robot.joint_names
        if sorted(self.joint_names) != sorted(robot.joint_names):
            raise ConfigError(f"joint_names must be an ordering of robot {robot.name!r}'s {list(robot.joint_names)}, "
                              f"got {list(self.joint_names)}")
        if self.points and not self.cameras:
            raise ConfigError("points needs a camera: set cameras, e.g. [front]")


class MujocoSimNode(BaseNode):
    def __init__(self, **kwargs):
        super().__init__("mujoco_sim", **kwargs)
        self.config = c = declare_config(self, MujocoSimConfig)
        from robot_rl.sim.env import ArmEnv  # heavy: after parameters are known to be valid

        try:
            self.env = ArmEnv(task=c.task, cameras=c.cameras, image_size=(c.image_width, c.image_height),
                              depth=c.depth, points=c.points, num_points=c.num_points, control_dt=c.control_dt,
                              robot=c.robot)
        except ValueError as e:
            raise ConfigError(f"mujoco_sim: {e}") from e
        env = self.env
        # the driver's own limits, in the robot's joint order: a target is approached at most a step per tick
        self.guard = guard_for_robot(env.robot, JointMap(env.joint_names), c.control_dt, c.max_step,
                                     c.gripper_max_step, startup_ticks=0)
        self._resets = 0
        self._started = False
        self._time_offset = 0.0
        self._pending: tuple[np.ndarray, tuple[str, ...]] | None = None  # latest valid forward command
        self._trajectory: TrajectoryFollower | None = None
        self._steps = 0
        self._last_step_wall = time.monotonic()
        self._unanswered = 0  # lock-step: observations published that no command has answered yet

        # Latched announcement of each episode's first observation time, published before that
        # observation: policies with state (history, chunk queue) reset on it, with no race.
        self.pub_episode = self.create_publisher(Header, "/sim/episode_start", LATCHED)
        self.pub_joints = self.create_publisher(JointState, "/joint_states", RELIABLE)
        self.pub_poses = self.create_publisher(PoseArray, "/task/object_poses", RELIABLE)
        self.pub_reward = self.create_publisher(Float32, "/task/reward", RELIABLE)
        self.pub_success = self.create_publisher(Bool, "/task/success", RELIABLE)
        self.pub_clock = self.create_publisher(ClockMsg, "/clock", RELIABLE) if c.publish_clock else None
        self.pub_cams = {}
        for cam in c.cameras:
            self.pub_cams[cam] = (
                self.create_publisher(Image, f"/camera/{cam}/image_raw", qos_profile_sensor_data),
                self.create_publisher(CameraInfo, f"/camera/{cam}/camera_info", qos_profile_sensor_data),
                self.create_publisher(Image, f"/camera/{cam}/depth/image_raw", qos_profile_sensor_data) if c.depth else None,
            )
        self.pub_points = (self.create_publisher(PointCloud2, f"/camera/{c.cameras[0]}/points", qos_profile_sensor_data)
                           if c.points else None)

        self.create_subscription(Float64MultiArray, "/forward_position_controller/commands", self._on_command, RELIABLE)
        self.create_subscription(JointTrajectory, "/joint_trajectory_controller/joint_trajectory", self._on_trajectory, RELIABLE)
        self.create_service(Trigger, "/sim/reset", self._on_reset)

        self._reset_env(c.seed)
        steady = Clock(clock_type=ClockType.STEADY_TIME)  # never sim time: this node makes it
        if c.mode == "realtime":
            self.create_timer(c.control_dt / c.real_time_factor, self._step, clock=steady)
        else:
            self._kick = self.create_guard_condition(self._lockstep_tick)
            self.create_timer(min(0.05, c.lockstep_timeout / 4), self._lockstep_watchdog, clock=steady)
        self.get_logger().info(f"task {c.task}, mode {c.mode}, seed {c.seed}, cameras {list(c.cameras)}")

    # ------------------------------------------------------------------ time and episodes
    def sim_time(self) -> float:
        """Monotonic across resets, so stamps and /clock never go back."""
        return self._time_offset + self.env.time

    def _reset_env(self, seed: int) -> None:
        self._time_offset = self.sim_time() + self.config.control_dt if self._started else 0.0
        self._started = True
        obs, _ = self.env.reset(seed=seed)
        self.guard.reset(obs["joint_pos"])
        self._pending, self._trajectory, self._steps = None, None, 0
        self._last_step_wall = time.monotonic()
        self.pub_episode.publish(msgs.header(self.sim_time(), str(self._resets)))
        self._publish(obs)

    def _on_reset(self, request, response):
        seed = self.config.seed + self._resets
        self._reset_env(seed)
        self._resets += 1
        response.success = True
        response.message = f"episode {self._resets} seed {seed} time {self.sim_time():.9f}"
        return response

    # ------------------------------------------------------------------ commands
    def _on_command(self, msg: Float64MultiArray) -> None:
        values = msgs.array_from_msg(msg)
        reason = self.guard.validate(values, self.config.joint_names)
        if reason is not None:
            self.get_logger().error(f"/forward_position_controller/commands: command refused: {reason}; holding the last safe command")
        else:
            self._pending, self._trajectory = (values, self.config.joint_names), None
        if self.config.mode == "lockstep":  # a refused command still answers its observation
            self._unanswered = max(0, self._unanswered - 1)
            if self._unanswered == 0:
                self._kick.trigger()

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        try:
            names, times, positions = msgs.trajectory_from_msg(msg)
            if not len(times):
                raise CommandError("trajectory refused: it has no points")
            reason = self.guard.validate(positions[0], names)
            if reason is not None:
                raise CommandError(f"trajectory refused: {reason}")
            last = self.guard.last
            start = [last[self.env.joint_names.index(n)] for n in names]
            stamp, now = msgs.from_time(msg.header.stamp), self.sim_time()
            t0 = stamp if 0 < stamp and abs(stamp - now) < STAMP_WINDOW else now
            if stamp > 0 and t0 == now:
                self.get_logger().warning(f"trajectory stamp {stamp:.3f} is far from sim time {now:.3f} "
                                          "(use_sim_time not set?); starting it now")
            self._trajectory, self._pending = TrajectoryFollower(names, times, positions, t0, start), None
        except (CommandError, DataError) as e:
            self.get_logger().error(f"/joint_trajectory_controller/joint_trajectory: {e}; holding the last safe command")
            return
        if self.config.mode == "lockstep":
            self._unanswered = 0
            self._kick.trigger()

    def _target(self):
        """(values, names) to send to the guard this tick, or None to hold."""
        if self._trajectory is not None:
            t_next = self.sim_time() + self.config.control_dt
            values = self._trajectory.sample(t_next)
            names = self._trajectory.names
            if self._trajectory.done(t_next):
                self._trajectory = None
            return values, names
        return self._pending  # the latest forward command stays the target: the arm goes there at its velocity limit

    # ------------------------------------------------------------------ stepping
    def _step(self) -> None:
        target = self._target()
        if target is not None:
            result = self.guard.apply(*target)
            if result.refusal is not None:  # validated on arrival; only trajectories can get here
                self.get_logger().error(result.refusal)
        self.env.apply_command(self.guard.hold())
        self.env.step_physics()
        self._steps += 1
        self._last_step_wall = time.monotonic()
        self._publish(self.env.observe())

    def _lockstep_tick(self) -> None:
        if self._unanswered > 0 and self._trajectory is None:
            return  # a kick from before a reset: the new episode's first observation is not answered yet
        self._step()
        if self._trajectory is not None:  # a trajectory is a command for every tick it covers
            self._kick.trigger()

    def _lockstep_watchdog(self) -> None:
        if time.monotonic() - self._last_step_wall >= self.config.lockstep_timeout:
            self._unanswered = 0  # answers to older observations are not waited for any more
            self._step()

    # ------------------------------------------------------------------ publishing
    def _publish(self, obs: dict) -> None:
        self._unanswered += 1
        c, t = self.config, self.sim_time()
        stamp = msgs.to_time(t)
        if self.pub_clock is not None:
            self.pub_clock.publish(ClockMsg(clock=stamp))
        for cam, (pub_rgb, pub_info, pub_depth) in self.pub_cams.items():
            frame = f"{cam}_camera_optical_frame"
            pub_rgb.publish(msgs.image_to_msg(obs[f"{cam}_rgb"], stamp, frame))
            pub_info.publish(msgs.camera_info_to_msg(*self.env.camera_intrinsics(cam), stamp, frame))
            if pub_depth is not None:
                pub_depth.publish(msgs.image_to_msg(obs[f"{cam}_depth"], stamp, frame))
        if self.pub_points is not None:
            self.pub_points.publish(msgs.points_to_msg(obs["points"], stamp, c.frame_id))
        reward, success = self.env.evaluate()
        self.pub_poses.publish(msgs.poses_to_msg(obs["object_poses"], stamp, c.frame_id))
        self.pub_reward.publish(Float32(data=float(1.0 if success else reward)))
        self.pub_success.publish(Bool(data=bool(success)))
        # last: a commander that reacts to joint states already has this tick's poses
        self.pub_joints.publish(msgs.joint_state_to_msg(self.env.joint_names, obs["joint_pos"],
                                                        obs["joint_vel"], stamp=stamp))

    def close(self) -> None:
        self.env.close()


def main(args=None) -> int:
    return run_node(MujocoSimNode, args)


if __name__ == "__main__":
    sys.exit(main())
