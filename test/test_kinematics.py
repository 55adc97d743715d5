import numpy as np

from arms import HOME_QPOS
from arms import ArmKinematics, down_orientation


def test_ik_reaches_a_downward_pose_on_the_table():
    kin = ArmKinematics()
    target = np.array([0.55, -0.1, 0.1])
    q = HOME_QPOS[:7]
    for _ in range(5):  # the experts call IK every step from the current posture
        q = kin.ik(q, target, down_orientation(0.3))
    pos, rot = kin.fk(q)
    assert np.linalg.norm(pos - target) < 2e-3
    assert np.abs(rot - down_orientation(0.3)).max() < 1e-2
    assert np.all(q >= kin.lower) and np.all(q <= kin.upper)


def test_tcp_pose_is_fk_with_a_unit_quaternion():
    kin = ArmKinematics()
    pos, quat = kin.tcp_pose(HOME_QPOS[:7])
    fk_pos, _ = kin.fk(HOME_QPOS[:7])
    np.testing.assert_array_equal(pos, fk_pos)
    assert abs(np.linalg.norm(quat) - 1.0) < 1e-9
    assert abs(abs(quat[1]) - 1.0) < 1e-3  # home points down: a half turn about x


def test_tcp_positions_agree_with_fk_from_several_threads_at_once():
    """The residual node relabels demos (learner thread) while it controls: each thread its own model."""
    from concurrent.futures import ThreadPoolExecutor

    from arms import joint_limits
    from arms import tcp_positions

    lo, hi = joint_limits()
    rng = np.random.default_rng(0)
    batches = [lo + (hi - lo) * rng.random((300, 8)) for _ in range(4)]
    reference = ArmKinematics()
    expected = [np.stack([reference.fk(q[:7])[0] for q in b]) for b in batches]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(tcp_positions, batches))
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, atol=1e-6)
    assert tcp_positions(batches[0][:2].reshape(1, 2, 8)).shape == (1, 2, 3)
