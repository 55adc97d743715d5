"""Builds the MuJoCo model: the URDF arm plus what a URDF cannot hold.

The URDF is shared with robot_state_publisher, so actuators, gravity compensation, the table,
the objects, lights and cameras are added here with MjSpec instead of in a second model file.
"""
from __future__ import annotations

import mujoco
import numpy as np

from robot_rl.sim.arm import ARM_JOINTS, GRIPPER_JOINT, URDF_PATH

PHYSICS_DT = 0.002
# Position servos per joint (N m / rad); the wrist joints are lighter, like the Panda's.
ARM_KP = (2000.0, 2000.0, 1500.0, 1500.0, 500.0, 500.0, 300.0)
ARM_FORCE = (87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0)
GRIPPER_KP = 1000.0
GRIPPER_FORCE = 20.0
CUBE_HALF = 0.02
TABLE_TOP = 0.0
CAMERA_NAMES = ("front", "wrist")
ARM_COLLISION, WORLD_COLLISION, ALL_COLLISION = 2, 1, 3
ARM_BODIES = ("link1", "link2", "link3", "link4", "link5", "link6", "link7", "hand",
              "left_finger", "right_finger")


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


def build_model(with_cube: bool, goal_kind: str, image_size=(96, 96)) -> mujoco.MjModel:
    """Compile the scene. goal_kind: 'sphere' (reach), 'disc' (push) or 'none' (lift)."""
    spec = mujoco.MjSpec.from_file(str(URDF_PATH))
    spec.option.timestep = PHYSICS_DT
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.impratio = 10.0
    spec.visual.global_.offwidth = max(640, image_size[0])
    spec.visual.global_.offheight = max(480, image_size[1])
    spec.visual.headlight.ambient = [0.4, 0.4, 0.4]
    spec.visual.quality.shadowsize = 0

    for name in ("base_link",) + ARM_BODIES:
        body = spec.body(name)
        body.gravcomp = 0.0 if name == "base_link" else 1.0
        for geom in body.geoms:  # the arm touches the world, never itself
            geom.contype, geom.conaffinity = ARM_COLLISION, WORLD_COLLISION
    for name in ARM_JOINTS:
        spec.joint(name).armature = 0.1
    for name, kp, force in zip(ARM_JOINTS, ARM_KP, ARM_FORCE):
        act = spec.add_actuator(name=name, target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_position(kp=kp, kv=2.0 * np.sqrt(kp * 0.5))
        act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
        act.forcerange = [-force, force]
    grip = spec.add_actuator(name=GRIPPER_JOINT, target=GRIPPER_JOINT, trntype=mujoco.mjtTrn.mjTRN_JOINT)
    grip.set_to_position(kp=GRIPPER_KP, kv=30.0)
    grip.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
    grip.forcerange = [-GRIPPER_FORCE, GRIPPER_FORCE]
    for finger in ("left_finger", "right_finger"):
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
    hand = spec.body("hand")
    hand.add_camera(name="wrist", pos=[0.1, 0.0, 0.0],
                    quat=look_at_quat([0.1, 0.0, 0.0], [0.0, 0.0, 0.25], up=(1, 0, 0)), fovy=75)
    spec.body("tcp").add_site(name="tcp", size=[0.005, 0, 0], rgba=[1, 1, 0, 0])

    if with_cube:
        cube = world.add_body(name="cube", pos=[0.5, 0.0, TABLE_TOP + CUBE_HALF])
        cube.add_freejoint(name="cube_joint")
        cube.add_geom(name="cube", type=mujoco.mjtGeom.mjGEOM_BOX, size=[CUBE_HALF] * 3,
                      mass=0.05, friction=[1.0, 0.01, 0.001], condim=4, rgba=[0.85, 0.15, 0.15, 1],
                      contype=WORLD_COLLISION, conaffinity=ALL_COLLISION)
    if goal_kind != "none":
        goal = world.add_body(name="goal", mocap=True, pos=[0.5, 0.2, 0.2])
        if goal_kind == "sphere":
            goal.add_geom(type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[0.02, 0, 0], contype=0,
                          conaffinity=0, rgba=[0.1, 0.8, 0.2, 0.6])
        else:
            goal.add_geom(type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[0.05, 0.001, 0], contype=0,
                          conaffinity=0, rgba=[0.1, 0.8, 0.2, 0.6])
    return spec.compile()
