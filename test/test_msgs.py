"""msgs.py round trips: numpy -> message -> numpy gives back the same arrays."""
import numpy as np
import pytest

from robot_rl.errors import DataError
from robot_rl.ros import msgs

RNG = np.random.default_rng(0)


def test_time_round_trip():
    for s in [0.0, 0.1, 1.5, 12345.678901234]:
        assert abs(msgs.from_time(msgs.to_time(s)) - s) < 1e-9
        assert abs(msgs.from_duration(msgs.to_duration(s)) - s) < 1e-9
    t = msgs.to_time(2.9999999999)
    assert t.nanosec < 1_000_000_000
    assert abs(msgs.from_time(msgs.clock_to_msg(3.25).clock) - 3.25) < 1e-9


def test_joint_state_round_trip():
    names = [f"joint{i}" for i in range(1, 8)] + ["finger_joint"]
    q, v = RNG.normal(size=8), RNG.normal(size=8)
    m = msgs.joint_state_to_msg(names, q, v, stamp=1.25)
    n2, q2, v2, e2 = msgs.joint_state_from_msg(m)
    assert n2 == tuple(names) and e2.shape == (0,)
    np.testing.assert_array_equal(q2, q)
    np.testing.assert_array_equal(v2, v)
    assert msgs.from_time(m.header.stamp) == 1.25


def test_reorder_by_name():
    out = msgs.reorder(["b", "a", "c"], np.array([2.0, 1.0, 3.0]), ["a", "b", "c"])
    np.testing.assert_array_equal(out, [1.0, 2.0, 3.0])
    with pytest.raises(DataError):
        msgs.reorder(["a"], [1.0], ["a", "z"])


def test_joints_from_msg_orders_by_name():
    m = msgs.joint_state_to_msg(["b", "a", "c"], [2.0, 1.0, 3.0], [20.0, 10.0, 30.0], stamp=0.5)
    stamp, q, v = msgs.joints_from_msg(m, ["a", "b"])
    assert stamp == 0.5
    np.testing.assert_array_equal(q, [1.0, 2.0])
    np.testing.assert_array_equal(v, [10.0, 20.0])
    _, q, v = msgs.joints_from_msg(msgs.joint_state_to_msg(["b", "a"], [2.0, 1.0]), ["a", "b"])
    np.testing.assert_array_equal(v, [0.0, 0.0])  # no velocities in the message
    with pytest.raises(DataError):
        msgs.joints_from_msg(m, ["a", "z"])


def test_float64_array_round_trip():
    x = RNG.normal(size=8)
    np.testing.assert_array_equal(msgs.array_from_msg(msgs.array_to_msg(x)), x)
    assert msgs.array_from_msg(msgs.array_to_msg([])).shape == (0,)


def test_trajectory_round_trip():
    names = ["a", "b", "c"]
    times = np.array([0.1, 0.2, 0.35])
    q = RNG.normal(size=(3, 3))
    n2, t2, q2 = msgs.trajectory_from_msg(msgs.trajectory_to_msg(names, times, q))
    assert n2 == tuple(names)
    np.testing.assert_allclose(t2, times, atol=1e-9)
    np.testing.assert_array_equal(q2, q)


def test_trajectory_bad_width_raises():
    m = msgs.trajectory_to_msg(["a", "b"], [0.1], [[1.0, 2.0]])
    m.joint_names = ["a", "b", "c"]
    with pytest.raises(DataError):
        msgs.trajectory_from_msg(m)


def test_rgb_and_depth_round_trip():
    rgb = RNG.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    m = msgs.image_to_msg(rgb, stamp=0.5, frame_id="front")
    assert (m.encoding, m.step, m.header.frame_id) == ("rgb8", 64 * 3, "front")
    np.testing.assert_array_equal(msgs.image_from_msg(m), rgb)
    depth = RNG.uniform(0.1, 3.0, size=(48, 64)).astype(np.float32)
    m = msgs.image_to_msg(depth)
    assert m.encoding == "32FC1" and m.step == 64 * 4
    out = msgs.image_from_msg(m)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, depth)
    out[0, 0] = -1.0  # the result is the caller's own copy


def test_image_with_row_padding():
    rgb = RNG.integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
    m = msgs.image_to_msg(rgb)
    padded = np.zeros((4, 16), dtype=np.uint8)
    padded[:, :15] = rgb.reshape(4, 15)
    m.step = 16
    m.data = padded.tobytes()
    np.testing.assert_array_equal(msgs.image_from_msg(m), rgb)


def test_camera_info_round_trip():
    intr = (60.0, 61.0, 47.5, 48.5, 96, 96)
    m = msgs.camera_info_to_msg(*intr, frame_id="front")
    assert msgs.camera_info_from_msg(m) == intr
    assert m.p[0] == 60.0 and m.p[6] == 48.5 and m.r[0] == 1.0


@pytest.mark.parametrize("c", [3, 6])
def test_points_round_trip(c):
    pts = RNG.normal(size=(500, c)).astype(np.float32)
    m = msgs.points_to_msg(pts, frame_id="world")
    assert [f.name for f in m.fields] == list("xyzrgb"[:c])
    np.testing.assert_array_equal(msgs.points_from_msg(m), pts)


def test_points_with_extra_field_and_padding():
    # x y z, then 4 bytes of something else, then r g b: offsets are honoured, not assumed
    from sensor_msgs.msg import PointField
    pts = RNG.normal(size=(10, 6)).astype(np.float32)
    raw = np.zeros((10, 8), dtype=np.float32)
    raw[:, :3], raw[:, 4:7] = pts[:, :3], pts[:, 3:]
    m = msgs.points_to_msg(pts)
    m.fields = [PointField(name=n, offset=o, datatype=PointField.FLOAT32, count=1)
                for n, o in zip("xyzrgb", [0, 4, 8, 16, 20, 24])]
    m.point_step, m.row_step = 32, 320
    m.data = raw.tobytes()
    np.testing.assert_array_equal(msgs.points_from_msg(m), pts)


def test_poses_round_trip():
    poses = RNG.normal(size=(3, 7))
    np.testing.assert_array_equal(msgs.poses_from_msg(msgs.poses_to_msg(poses)), poses)
    assert msgs.poses_from_msg(msgs.poses_to_msg(np.zeros((0, 7)))).shape == (0, 7)

