"""Builds the MuJoCo model: any robot's URDF plus what a URDF cannot hold.

The URDF is shared with robot_state_publisher, so actuators, gravity compensation, the table,
the objects, lights and cameras are added here with MjSpec instead of in a second model file.
Position servos come from SERVOS for the shipped arms (tuned) and from the URDF's effort limits
for any other robot.
"""
from __future__ import annotations

import mujoco
import numpy as np

from robot_rl.robot.kinematics import TCP_SITE, compile_spec
from robot_rl.robot.model import RobotModel

PHYSICS_DT = 0.002
# Position servos per arm joint: (kp in N m / rad, force limit in N m); the wrist joints are
# lighter, like the Panda's. A robot not listed gets kp = SERVO_STIFFNESS x its URDF effort limit.
SERVOS = {
    "arm": ((2000.0, 2000.0, 1500.0, 1500.0, 500.0, 500.0, 300.0), (87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0)),
    "ur_arm": ((3000.0, 3000.0, 2000.0, 500.0, 500.0, 300.0), (150.0, 150.0, 150.0, 28.0, 28.0, 28.0)),
}
SERVO_STIFFNESS = 25.0
GRIPPER_KP = 1000.0
GRIPPER_FORCE = 20.0
CUBE_HALF = 0.02
TABLE_TOP = 0.0
CAMERA_NAMES = ("front", "wrist")
ARM_COLLISION, WORLD_COLLISION, ALL_COLLISION = 2, 1, 3
# Markers collide with nothing, yet are not contype=conaffinity=0: the URDF compiler's discardvisual
# would drop them, and no camera would see the goal.
MARKER_COLLISION = 4


def look_at_quat(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Quaternion (wxyz) of a MuJoCo camera at `eye` looking at `target` (cameras look along -z)."""
    eye, target, up = (np.asarray(v, float) for v in (eye, target, up))
    back = eye - target
    back /= np.linalg.norm(back)
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    cam_up = np.cross(back, right)
    mat = np.stack([right, cam_up, back], axis=1)
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, mat.flatten())
    return quat


def servo_gains(robot: RobotModel) -> tuple[np.ndarray, np.ndarray]:
    """(kp, force limit) per arm joint."""
    if robot.name in SERVOS:
        kp, force = SERVOS[robot.name]
        return np.asarray(kp), np.asarray(force)
    effort = np.asarray(robot.effort[: robot.num_arm], float)
    effort = np.where(np.isfinite(effort), effort, 100.0)
    return SERVO_STIFFNESS * effort, effort


def finger_links(robot: RobotModel) -> list[str]:
    """The links the gripper joints (and the joints mimicking them) move."""
    joints = robot.joints()
    moved = set(robot.gripper_joints)
    return [j.child for j in joints.values() if j.name in moved or j.mimic in moved]


def build_model(robot: RobotModel, with_cube: bool, goal_kind: str, image_size=(96, 96)) -> mujoco.MjModel:
    """Compile the scene. goal_kind: 'sphere' (reach), 'disc' (push) or 'none' (lift)."""
    spec = compile_spec(robot.urdf)
    spec.compiler.fusestatic = False  # keep every link a body: the TCP and the wrist camera need theirs
    spec.option.timestep = PHYSICS_DT
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.impratio = 10.0
    spec.visual.global_.offwidth = max(640, image_size[0])
    spec.visual.global_.offheight = max(480, image_size[1])
    spec.visual.headlight.ambient = [0.4, 0.4, 0.4]
    spec.visual.quality.shadowsize = 0

    for name in robot.links():
        body = spec.body(name)
        body.gravcomp = 0.0 if name == robot.base_link else 1.0
        for geom in body.geoms:  # the arm touches the world, never itself
            geom.contype, geom.conaffinity = ARM_COLLISION, WORLD_COLLISION
    for name in robot.arm_joints:
        spec.joint(name).armature = 0.1
    for name in (*robot.arm_joints, *robot.gripper_joints):
        # Hard stops, as on a real arm: MuJoCo's default soft limit let a joint slammed at a limit
        # pass it by up to 0.28 rad; these hold it within ~0.015 rad (timeconst: 2 physics steps).
        spec.joint(name).solref_limit = [2 * PHYSICS_DT, 1.0]
        spec.joint(name).solimp_limit = [0.95, 0.99, 0.001, 0.5, 2.0]
    for name, kp, force in zip(robot.arm_joints, *servo_gains(robot)):
        act = spec.add_actuator(name=name, target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_position(kp=kp, kv=2.0 * np.sqrt(kp * 0.5))
        act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
        act.forcerange = [-force, force]
    for name in robot.gripper_joints:
        grip = spec.add_actuator(name=name, target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        grip.set_to_position(kp=GRIPPER_KP, kv=30.0)
        grip.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
        grip.forcerange = [-GRIPPER_FORCE, GRIPPER_FORCE]
    for finger in finger_links(robot):
        for geom in spec.body(finger).geoms:
            geom.friction = [1.5, 0.01, 0.001]
            geom.condim = 4

    world = spec.worldbody
    world.add_light(pos=[0.5, -0.5, 1.5], dir=[-0.2, 0.3, -1.0], diffuse=[0.6, 0.6, 0.6],
                    castshadow=False)  # software GL: shadows cost more than they teach
    world.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[2, 2, 0.1],
                   pos=[0, 0, -0.75], rgba=[0.3, 0.32, 0.35, 1],
                   contype=WORLD_COLLISION, conaffinity=ALL_COLLISION)
    world.add_geom(name="table", type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.55, 0.6, 0.02],
                   pos=[0.35, 0.0, TABLE_TOP - 0.02], rgba=[0.55, 0.42, 0.3, 1],
                   contype=WORLD_COLLISION, conaffinity=ALL_COLLISION)
    front_eye = [1.15, 0.55, 0.8]
    world.add_camera(name="front", pos=front_eye, quat=look_at_quat(front_eye, [0.4, 0.0, 0.1]), fovy=55)
    hand = spec.body(robot.joints()[_joint_to(robot, robot.tcp_link)].parent)  # the link the TCP hangs from
    hand.add_camera(name="wrist", pos=[0.1, 0.0, 0.0],
                    quat=look_at_quat([0.1, 0.0, 0.0], [0.0, 0.0, 0.25], up=(1, 0, 0)), fovy=75)
    spec.body(robot.tcp_link).add_site(name=TCP_SITE, size=[0.005, 0, 0], rgba=[1, 1, 0, 0])

    if with_cube:
        cube = world.add_body(name="cube", pos=[0.5, 0.0, TABLE_TOP + CUBE_HALF])
        cube.add_freejoint(name="cube_joint")
        cube.add_geom(name="cube", type=mujoco.mjtGeom.mjGEOM_BOX, size=[CUBE_HALF] * 3,
                      mass=0.05, friction=[1.0, 0.01, 0.001], condim=4, rgba=[0.85, 0.15, 0.15, 1],
                      contype=WORLD_COLLISION, conaffinity=ALL_COLLISION)
    if goal_kind != "none":
        goal = world.add_body(name="goal", mocap=True, pos=[0.5, 0.2, 0.2])
        if goal_kind == "sphere":
            goal.add_geom(type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[0.02, 0, 0], contype=MARKER_COLLISION,
                          conaffinity=0, rgba=[0.1, 0.8, 0.2, 1.0])
        else:
            # Opaque and 6 mm tall: a translucent or paper-thin disc stays under the table crop of
            # the depth image (perception/pointcloud.py), and a point-cloud policy would not see it.
            goal.add_geom(type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[0.05, 0.003, 0], pos=[0, 0, 0.002],
                          contype=MARKER_COLLISION, conaffinity=0, rgba=[0.1, 0.8, 0.2, 1.0])
    return spec.compile()


def _joint_to(robot: RobotModel, link: str) -> str:
    return next(j.name for j in robot.joints().values() if j.child == link)
