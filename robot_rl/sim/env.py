"""ArmEnv: the simulated arm and a task behind the gymnasium API.

Actions are absolute joint position targets (the robot's arm joints + gripper, in its
`joint_names` order) held for one 10 Hz control step while the physics runs its substeps: the
same command a ros2_control forward position controller receives, so a policy moves between sim
and a real arm without changes. Any RobotModel whose URDF MuJoCo imports works (`robot`: a
catalog name such as `arm` or `ur_arm`, a URDF path, or a RobotModel).
"""
from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from robot_rl.perception.depth import PinholeCamera
from robot_rl.perception.extrinsics import optical_from_gl
from robot_rl.perception.pointcloud import PointCloudConfig, cloud_from_depth
from robot_rl.robot import RobotModel, load_robot
from robot_rl.robot.kinematics import TCP_SITE
from robot_rl.sim.scene import CAMERA_NAMES, build_model
from robot_rl.sim.tasks import TASKS

CONTROL_DT = 0.1
HOME_NOISE = 0.05  # rad of uniform noise on the arm's start posture


class ArmEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": int(1 / CONTROL_DT)}

    def __init__(self, task: str = "reach", cameras=(), image_size=(96, 96), depth: bool = False,
                 points: bool = False, num_points: int = 512, max_steps: int | None = None,
                 render_mode: str | None = None, control_dt: float = CONTROL_DT,
                 robot: str | RobotModel = "arm"):
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose one of {sorted(TASKS)}")
        unknown = set(cameras) - set(CAMERA_NAMES)
        if unknown:
            raise ValueError(f"unknown cameras {sorted(unknown)}; choose from {CAMERA_NAMES}")
        self.robot = robot if isinstance(robot, RobotModel) else load_robot(robot)
        self.task = TASKS[task]
        self.task_name = task
        self.cameras = tuple(cameras)
        self.image_size = tuple(image_size)  # (width, height)
        self.depth = depth
        self.points = points
        self.num_points = num_points
        self.max_steps = max_steps or self.task.max_steps
        self.render_mode = render_mode
        self.control_dt = control_dt
        self.model = build_model(self.robot, self.task.with_cube, self.task.goal_kind, self.image_size)
        self.data = mujoco.MjData(self.model)
        self.n_substeps = max(1, round(control_dt / self.model.opt.timestep))
        self.joint_names = self.robot.joint_names
        self.joint_lower, self.joint_upper = self.robot.joint_limits()
        self.object_names = self.task.object_names
        names = self.joint_names
        self._qadr = np.array([self.model.jnt_qposadr[self.model.joint(n).id] for n in names])
        self._dadr = np.array([self.model.jnt_dofadr[self.model.joint(n).id] for n in names])
        self._act = np.array([self.model.actuator(n).id for n in names])
        # joints that mimic a gripper joint start where it starts (an equality holds them after)
        mimics = [(j.name, j.mimic) for j in self.robot.joints().values() if j.mimic in names]
        self._mimic = [(self.model.jnt_qposadr[self.model.joint(m).id], names.index(src)) for m, src in mimics]
        self._renderer = None
        self._depth_renderer = None
        self._steps = 0
        self.action_space = spaces.Box(self.joint_lower.astype(np.float32),
                                       self.joint_upper.astype(np.float32), dtype=np.float32)
        self.observation_space = self._make_observation_space()

    # --- gymnasium API ---------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options=None):
        super().reset(seed=seed)
        mujoco.mj_resetData(self.model, self.data)
        q = self.robot.home.copy()
        n = self.robot.num_arm
        q[:n] += self.np_random.uniform(-HOME_NOISE, HOME_NOISE, n)
        self.data.qpos[self._qadr] = q
        for adr, src in self._mimic:
            self.data.qpos[adr] = q[src]
        self.data.ctrl[self._act] = q
        self.task.randomize(self.model, self.data, self.np_random)
        mujoco.mj_forward(self.model, self.data)
        self._steps = 0
        return self.observe(), {"success": False, "sparse_reward": 0.0}

    def step(self, action):
        self.apply_command(action)
        self.step_physics()
        self._steps += 1
        reward, success = self.task.evaluate(self.data)
        info = {"success": success, "sparse_reward": float(success)}
        truncated = self._steps >= self.max_steps and not success
        return self.observe(), (1.0 if success else reward), success, truncated, info

    def render(self, camera: str = "front"):
        return self._render_rgb(camera)

    def close(self):
        for r in (self._renderer, self._depth_renderer):
            if r is not None:
                r.close()
        self._renderer = self._depth_renderer = None

    # --- pieces used by the ROS sim node -----------------------------------------------------
    @property
    def time(self) -> float:
        return float(self.data.time)

    def apply_command(self, targets) -> None:
        """Set position targets (joint_names order), clipped to the joint limits."""
        self.data.ctrl[self._act] = np.clip(np.asarray(targets, float), self.joint_lower, self.joint_upper)

    def step_physics(self, n_substeps: int | None = None) -> None:
        mujoco.mj_step(self.model, self.data, nstep=n_substeps or self.n_substeps)

    def evaluate(self) -> tuple[float, bool]:
        return self.task.evaluate(self.data)

    def camera_intrinsics(self, camera: str) -> tuple[float, float, float, float, int, int]:
        """(fx, fy, cx, cy, width, height) of a pinhole camera with square pixels, as CameraInfo's
        K has them (pixel centres at integer coordinates: cx = (width - 1) / 2)."""
        width, height = self.image_size
        fovy = np.deg2rad(self.model.cam_fovy[self.model.camera(camera).id])
        f = 0.5 * height / np.tan(0.5 * fovy)
        return f, f, (width - 1) / 2.0, (height - 1) / 2.0, width, height

    def camera_extrinsics(self, camera: str) -> np.ndarray:
        """Base-from-optical 4x4 of a camera (the robot's base is the world origin)."""
        cam = self.data.camera(camera)
        return optical_from_gl(cam.xpos, cam.xmat)

    # --- observations ------------------------------------------------------------------------
    def observe(self) -> dict:
        site = self.data.site(TCP_SITE)
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, site.xmat)
        obs = {
            "joint_pos": self.data.qpos[self._qadr].astype(np.float32),
            "joint_vel": self.data.qvel[self._dadr].astype(np.float32),
            "ee_pos": site.xpos.astype(np.float32),
            "ee_quat": quat.astype(np.float32),
            "object_poses": self._object_poses(),
        }
        for cam in self.cameras:
            obs[f"{cam}_rgb"] = self._render_rgb(cam)
            if self.depth or (self.points and cam == self.cameras[0]):
                obs[f"{cam}_depth"] = self._render_depth(cam)
        if self.points:
            obs["points"] = self._point_cloud(obs)
        return obs

    def _object_poses(self) -> np.ndarray:
        poses = np.zeros((len(self.object_names), 7), np.float32)
        for i, name in enumerate(self.object_names):
            if name == "goal":
                poses[i, :3] = self.data.mocap_pos[0]
                poses[i, 3:] = self.data.mocap_quat[0]
            else:
                body = self.data.body(name)
                poses[i, :3] = body.xpos
                poses[i, 3:] = body.xquat
        return poses

    def _point_cloud(self, obs: dict) -> np.ndarray:
        """The same path as a real depth camera's: 32FC1 metres, its CameraInfo, its optical frame."""
        cam = self.cameras[0]
        return cloud_from_depth(obs[f"{cam}_depth"], "32FC1", PinholeCamera(*self.camera_intrinsics(cam)),
                                self.camera_extrinsics(cam), PointCloudConfig(num_points=self.num_points),
                                obs[f"{cam}_rgb"])

    def _render_rgb(self, camera: str) -> np.ndarray:
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, self.image_size[1], self.image_size[0])
        self._renderer.update_scene(self.data, camera)
        return self._renderer.render().copy()

    def _render_depth(self, camera: str) -> np.ndarray:
        if self._depth_renderer is None:
            self._depth_renderer = mujoco.Renderer(self.model, self.image_size[1], self.image_size[0])
            self._depth_renderer.enable_depth_rendering()
        self._depth_renderer.update_scene(self.data, camera)
        return self._depth_renderer.render().astype(np.float32)

    def _make_observation_space(self) -> spaces.Dict:
        n, k = len(self.joint_names), len(self.object_names)
        width, height = self.image_size
        box = lambda *shape: spaces.Box(-np.inf, np.inf, shape, np.float32)  # noqa: E731
        space = {"joint_pos": box(n), "joint_vel": box(n), "ee_pos": box(3), "ee_quat": box(4),
                 "object_poses": box(k, 7)}
        for cam in self.cameras:
            space[f"{cam}_rgb"] = spaces.Box(0, 255, (height, width, 3), np.uint8)
            if self.depth or (self.points and cam == self.cameras[0]):
                space[f"{cam}_depth"] = spaces.Box(0, np.inf, (height, width), np.float32)
        if self.points:
            space["points"] = box(self.num_points, 6)
        return spaces.Dict(space)
