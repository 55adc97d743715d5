"""Point clouds from camera data: known scenes back-projected from optical-frame depth land on their
base-frame coordinates (16UC1 mm and 32FC1 m, holes dropped), camera poses from a parameter and
from URDF links, and the simulator's cloud made by the same path."""
import numpy as np
import pytest

from robot_rl.errors import ConfigError, DataError
from robot_rl.perception.depth import PinholeCamera, back_project, depth_in_metres
from robot_rl.perception.extrinsics import LinkPose, pose_matrix
from robot_rl.perception.pointcloud import PointCloudConfig, cloud_from_depth, cloud_from_points
from robot_rl.robot import load_robot
from robot_rl.robot.kinematics import Kinematics

CAM = PinholeCamera(fx=120.0, fy=110.0, cx=39.5, cy=29.5, width=80, height=60)
# looking straight down from 1 m: optical x = base x, optical y = base -y, optical z = base -z
DOWN = pose_matrix([0.5, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0])
EVERYTHING = PointCloudConfig(num_points=CAM.width * CAM.height,  # every pixel, no voxel merging
                               voxel_size=1e-6, workspace_min=(-9, -9, -9), workspace_max=(9, 9, 9))


def rays(camera, base_from_optical):
    """Per pixel (v, u): the base-frame origin and the direction whose optical z is 1."""
    v, u = np.indices((camera.height, camera.width), dtype=float)
    d = np.stack([(u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy, np.ones_like(u)], axis=-1)
    return base_from_optical[:3, 3], d @ base_from_optical[:3, :3].T


def render_table_and_box(camera, base_from_optical, table_z=0.2, box=((0.45, 0.6), (-0.1, 0.05), 0.35)):
    """Ray-cast z-depth of a table plane and a box top: (depth in m, hit-the-box mask)."""
    origin, d = rays(camera, base_from_optical)
    t_table = (table_z - origin[2]) / d[..., 2]
    (x0, x1), (y0, y1), top = box
    t_box = (top - origin[2]) / d[..., 2]
    hit = origin + d * t_box[..., None]
    on_box = (hit[..., 0] >= x0) & (hit[..., 0] <= x1) & (hit[..., 1] >= y0) & (hit[..., 1] <= y1)
    return np.where(on_box, t_box, t_table), on_box


def test_a_plane_seen_from_above_lands_at_its_height_for_both_encodings():
    depth_m = np.full((CAM.height, CAM.width), 0.8, np.float32)
    metres = cloud_from_depth(depth_m, "32FC1", CAM, DOWN, EVERYTHING)
    millimetres = cloud_from_depth((depth_m * 1000).astype(np.uint16), "16UC1", CAM, DOWN, EVERYTHING)
    xyz, index = back_project(depth_in_metres(depth_m, "32FC1"), CAM)
    assert len(index) == CAM.width * CAM.height
    # pixel (u, v) = (0, 0): optical ((0 - 39.5) / 120 * 0.8, (0 - 29.5) / 110 * 0.8, 0.8)
    np.testing.assert_allclose(xyz[0], [-39.5 / 120 * 0.8, -29.5 / 110 * 0.8, 0.8], rtol=1e-6)
    for cloud in (metres, millimetres):
        np.testing.assert_allclose(cloud[:, 2], 0.2, atol=1e-6)
        np.testing.assert_allclose(cloud[:, 0].min(), 0.5 - 39.5 / 120 * 0.8, atol=1e-6)  # image left = base -x
        np.testing.assert_allclose(cloud[:, 1].max(), 29.5 / 110 * 0.8, atol=1e-6)  # image top = base +y
    np.testing.assert_allclose(np.sort(metres[:, :2], axis=0), np.sort(millimetres[:, :2], axis=0), atol=1e-6)


@pytest.mark.parametrize("encoding", ["32FC1", "16UC1"])
def test_a_box_on_a_table_from_a_tilted_camera(encoding):
    # 35 degrees off vertical, from the side: a rotation about base x after looking down
    tilt = np.deg2rad(35.0)
    about_x = pose_matrix([0.55, -0.6, 0.9], [np.sin(tilt / 2), 0.0, 0.0, np.cos(tilt / 2)])
    pose = about_x.copy()
    pose[:3, :3] = about_x[:3, :3] @ DOWN[:3, :3]
    depth_m, on_box = render_table_and_box(CAM, pose)
    depth = depth_m.astype(np.float32) if encoding == "32FC1" else np.round(depth_m * 1000).astype(np.uint16)
    cloud = cloud_from_depth(depth, encoding, CAM, pose, EVERYTHING)
    tol = 1e-5 if encoding == "32FC1" else 2e-3  # millimetre steps
    top = np.abs(cloud[:, 2] - 0.35) < tol
    assert np.all(top | (np.abs(cloud[:, 2] - 0.2) < tol))  # every point on the table or the box top
    assert top.sum() == on_box.sum() > 50
    assert np.all((cloud[top, 0] > 0.45 - tol) & (cloud[top, 0] < 0.6 + tol))
    assert np.all((cloud[top, 1] > -0.1 - tol) & (cloud[top, 1] < 0.05 + tol))


def test_pixels_without_depth_are_dropped():
    depth = np.full((CAM.height, CAM.width), 0.8, np.float32)
    depth[0, :10], depth[1, :5], depth[2, :3], depth[3, 0] = np.nan, np.inf, 0.0, -1.0
    cloud = cloud_from_depth(depth, "32FC1", CAM, DOWN, EVERYTHING)
    assert len(cloud) == CAM.width * CAM.height and np.isfinite(cloud).all()  # padded to num_points...
    xyz, _ = back_project(depth_in_metres(depth, "32FC1"), CAM)
    assert len(xyz) == len(np.unique(cloud, axis=0)) == CAM.width * CAM.height - 19  # ...from the 4781 real ones
    mm = np.full((CAM.height, CAM.width), 800, np.uint16)
    mm[5, :7] = 0
    assert len(back_project(depth_in_metres(mm, "16UC1"), CAM)[0]) == CAM.width * CAM.height - 7
    with pytest.raises(DataError, match="encoding"):
        depth_in_metres(mm, "mono8")
    with pytest.raises(DataError, match="camera info says"):
        back_project(depth_in_metres(mm[:, :-1], "16UC1"), CAM)


def test_a_cloud_in_the_camera_frame_gives_the_same_cloud_as_its_depth_image():
    """A driver's PointCloud2 in the optical frame (plus the extrinsics) = the depth path."""
    config = PointCloudConfig(num_points=256, workspace_min=(0.3, -0.3, 0.21), workspace_max=(0.8, 0.3, 0.6))
    depth_m, _ = render_table_and_box(CAM, DOWN)
    xyz, _ = back_project(depth_in_metres(depth_m.astype(np.float32), "32FC1"), CAM)
    np.testing.assert_allclose(cloud_from_points(xyz, DOWN, config),
                               cloud_from_depth(depth_m.astype(np.float32), "32FC1", CAM, DOWN, config), atol=1e-6)
    assert np.all(cloud_from_points(xyz, DOWN, config)[:, 2] > 0.21)  # cropped: only the box top remains


def test_camera_pose_parameter_is_checked():
    np.testing.assert_allclose(pose_matrix([1, 2, 3], [0, 0, np.sin(np.pi / 4), np.cos(np.pi / 4)])[:3, :3],
                               [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)  # 90 degrees about z
    with pytest.raises(ConfigError, match="unit length"):
        pose_matrix([0, 0, 0], [0, 0, 0, 2])
    with pytest.raises(ConfigError, match="3 translation"):
        pose_matrix([0, 0], [0, 0, 0, 1])


@pytest.mark.parametrize("name", ["arm", "ur_arm"])
def test_a_urdf_link_pose_follows_the_joints(name):
    """LinkPose (URDF origins and axes, numpy) agrees with MuJoCo's forward kinematics of the same URDF."""
    robot = load_robot(name)
    kin, link = Kinematics(robot), LinkPose(robot, robot.tcp_link)
    rng = np.random.default_rng(0)
    lo, hi = robot.lower[: robot.num_arm], robot.upper[: robot.num_arm]
    for _ in range(5):
        q = rng.uniform(lo, hi)
        m = link(dict(zip(robot.arm_joints, q)))
        pos, rot = kin.fk(q)
        np.testing.assert_allclose(m[:3, 3], pos, atol=1e-9)
        np.testing.assert_allclose(m[:3, :3], rot, atol=1e-9)
    with pytest.raises(ConfigError, match="needs the positions"):
        link({})
    with pytest.raises(ConfigError, match="not a link"):
        LinkPose(robot, "camera_optical_frame")


def test_the_simulator_cloud_is_the_camera_path():
    """ArmEnv's points = cloud_from_depth of its depth image, CameraInfo intrinsics and optical pose."""
    from robot_rl.sim.env import ArmEnv

    env = ArmEnv("lift", cameras=("front",), image_size=(64, 48), points=True, num_points=256)
    obs, _ = env.reset(seed=0)
    again = cloud_from_depth(obs["front_depth"], "32FC1", PinholeCamera(*env.camera_intrinsics("front")),
                             env.camera_extrinsics("front"), PointCloudConfig(num_points=256), obs["front_rgb"])
    np.testing.assert_array_equal(obs["points"], again)
    cube = obs["object_poses"][0, :3]
    top = obs["points"][np.linalg.norm(obs["points"][:, :3] - cube, axis=1) < 0.03]
    assert len(top) > 5 and abs(top[:, 2].max() - (cube[2] + 0.02)) < 0.005  # the cube's top face, 2 cm above its centre
    env.close()
