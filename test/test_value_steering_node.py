"""value_steering node over DDS: argmax of the critic on a constructed candidate set; fallback;
the guard re-seeded at each episode start; holds on stale inputs; and the whole sim_steering
graph (sim + diffusion candidates + steering) running episodes."""
import signal
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pytest
import torch
from geometry_msgs.msg import PoseArray
from sensor_msgs.msg import JointState
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Float64MultiArray, Header, Int32
from trajectory_msgs.msg import JointTrajectory

from robot_rl import paths
from robot_rl.policies.value.config import ValueConfig
from robot_rl.policies.value.model import ChunkCritic, ValueFunction, ValueNormalizer
from robot_rl.ros import msgs
from robot_rl.ros.candidates import candidates_to_msg, msg_to_candidates
from robot_rl.runtime.safety import CommandGuard
from arms import ARM, HOME_QPOS, JOINT_NAMES, joint_limits
from arms import ArmKinematics
from ros_helpers import wait_for

NODE = "robot_rl.ros.value_steering_node"
TRAJECTORY = "/joint_trajectory_controller/joint_trajectory"
SEEDS = [6]  # a random critic whose argmax is not candidate 0 (the fallback)


def _value_checkpoint(path, poison: bool = False):
    torch.manual_seed(SEEDS[0])
    cfg = ValueConfig(chunk=4, hidden=32, obs_keys=("joint_pos", "ee_pos", "object_poses"))
    critic = ChunkCritic(8 + 3 + 7, cfg)
    if poison:  # a critic that returns NaN for everything
        with torch.no_grad():
            critic.ensemble.net[-1].bias.fill_(float("nan"))
    vf = ValueFunction(critic, ValueNormalizer(-np.ones(18) * 3, np.ones(18) * 3, task_offsets=cfg.offset_objects), cfg)
    return vf, vf.save(path)


def _candidates():
    chunks = np.tile(HOME_QPOS, (6, 4, 1)).astype(np.float32)
    chunks[:, :, 0] += np.linspace(0.2, -0.2, 6)[:, None]  # within a step of home (URDF: 0.2175 rad per tick)
    chunks[:, :, 1] += np.linspace(-0.2, 0.2, 6)[:, None]
    return chunks


@pytest.mark.integration
@pytest.mark.parametrize("poison", [False, True])
def test_node_executes_the_argmax_or_falls_back(nodes, probe, tmp_path, poison):
    vf, ckpt = _value_checkpoint(tmp_path / "value", poison)
    for topic, kind in (("/value_steering/choice", Int32), ("/value_steering/scores", Float64MultiArray),
                        ("/joint_trajectory_controller/joint_trajectory", JointTrajectory)):
        probe.subscribe(kind, topic)
    # max_age: the probe publishes the observation once, a second before the candidates
    nodes.node("steering", NODE, {"value_checkpoint": str(ckpt), "max_age": 10.0})
    joints = probe.publisher(JointState, "/joint_states")
    poses = probe.publisher(PoseArray, "/task/object_poses")
    cands = probe.publisher(JointTrajectory, "/policy/candidates")
    stamp, cube = 5.0, np.array([[0.5, 0.0, 0.02, 1, 0, 0, 0]], np.float32)
    joints.publish(msgs.joint_state_to_msg(JOINT_NAMES, HOME_QPOS, stamp=stamp))
    poses.publish(msgs.poses_to_msg(cube, stamp))
    chunks = _candidates()
    time.sleep(1.0)  # the observations land before the candidates that refer to them
    cands.publish(candidates_to_msg(JOINT_NAMES, chunks, 0.1, stamp))
    wait_for(lambda: probe.count("/value_steering/choice") > 0, 20, "a steering decision")
    choice = probe.latest("/value_steering/choice").data
    ee_pos = ArmKinematics().fk(HOME_QPOS[:7])[0].astype(np.float32)
    obs = {"joint_pos": HOME_QPOS.astype(np.float32), "ee_pos": ee_pos, "object_poses": cube}
    if poison:
        assert choice == 0 and "fell back" in nodes.log("steering")
    else:
        expected = int(np.argmax(vf.score(obs, chunks)))
        assert expected != 0  # the argmax is not the fallback's candidate 0: the test can tell them apart
        assert choice == expected
        wait_for(lambda: probe.count("/joint_trajectory_controller/joint_trajectory") > 0, 5, "the executed chunk")
        names, times, positions = msgs.trajectory_from_msg(probe.latest("/joint_trajectory_controller/joint_trajectory"))
        assert positions.shape == (4, 8) and np.all(np.isfinite(positions))


@pytest.mark.integration
def test_node_reseeds_at_episode_start_and_holds_on_stale_inputs(nodes, probe):
    """No critic (candidate 0 executed). Stale candidates, then no joint states for max_age: a
    one-point hold at the measured position each time, nothing executed meanwhile. A new episode
    (/sim/episode_start): the guard clamps from the measured start, not the last command, and
    candidates from before the episode are dropped."""
    max_age = 2.0
    for topic, kind in ((TRAJECTORY, JointTrajectory), ("/value_steering/choice", Int32)):
        probe.subscribe(kind, topic)
    nodes.node("steering", NODE, {"max_age": max_age})
    joints = probe.publisher(JointState, "/joint_states")
    cands = probe.publisher(JointTrajectory, "/policy/candidates")
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    episode = probe.node.create_publisher(Header, "/sim/episode_start", latched)
    wait_for(lambda: episode.get_subscription_count() > 0, 15, "a subscriber on /sim/episode_start")
    # The publishers see the node's readers; the readers may not see them yet and would drop the
    # first candidates (then the watchdog's hold comes first): every subscription matched both ways.
    time.sleep(1.0)

    def observe(stamp, q):
        joints.publish(msgs.joint_state_to_msg(JOINT_NAMES, q, stamp=stamp))
        time.sleep(0.2)

    def next_trajectory(n):
        wait_for(lambda: probe.count(TRAJECTORY) > n, 10, f"trajectory {n + 1}")
        assert probe.count(TRAJECTORY) == n + 1
        return msgs.trajectory_from_msg(probe.all(TRAJECTORY)[n])[2], probe.all(TRAJECTORY)[n]

    chunks = _candidates()
    observe(5.0, HOME_QPOS)
    cands.publish(candidates_to_msg(JOINT_NAMES, chunks, 0.1, 5.0))
    executed, _ = next_trajectory(0)
    np.testing.assert_allclose(executed, chunks[0], atol=1e-6)  # within limits and max_step

    q1 = HOME_QPOS.copy()
    q1[0] += 0.1
    observe(7.0, q1)
    cands.publish(candidates_to_msg(JOINT_NAMES, chunks, 0.1, 7.0 - max_age - 1.0))  # stale candidates
    held, msg = next_trajectory(1)
    np.testing.assert_allclose(held, [q1], atol=1e-9)  # hold where the arm was measured, now
    assert msgs.from_time(msg.header.stamp) == 0.0
    observe(7.1, q1)
    cands.publish(candidates_to_msg(JOINT_NAMES, chunks, 0.1, 7.1))  # fresh again
    executed, _ = next_trajectory(2)
    assert executed.shape == (4, 8) and probe.count("/value_steering/choice") == 2
    assert "fresh again" in nodes.log("steering")

    q2 = HOME_QPOS.copy()
    q2[0] += 1.2  # more than max_step from the last command: only a re-seeded guard passes it
    episode.publish(msgs.header(10.0))
    time.sleep(0.2)
    observe(10.0, q2)
    cands.publish(candidates_to_msg(JOINT_NAMES, chunks, 0.1, 7.2))  # the old episode's: dropped
    cands.publish(candidates_to_msg(JOINT_NAMES, np.tile(q2, (2, 4, 1)), 0.1, 10.0))
    executed, _ = next_trajectory(3)
    np.testing.assert_allclose(executed, np.tile(q2, (4, 1)), atol=1e-9)
    assert probe.count("/value_steering/choice") == 3

    # no joint states for max_age: the watchdog holds (once) at the last measured position
    held, msg = next_trajectory(4)
    np.testing.assert_allclose(held, [q2], atol=1e-9)
    time.sleep(max_age)
    assert probe.count(TRAJECTORY) == 5, "one hold per stale spell"
    log = nodes.log("steering")
    assert "candidates' observation is" in log and "no /joint_states for" in log


@pytest.mark.integration
def test_sim_steering_graph_runs_episodes_on_the_critics_choices(nodes, probe, tmp_path, monkeypatch,
                                                                  torch_one_thread):
    """`robot-rl bringup sim_steering` (lock-step, tiny diffusion checkpoint + tiny critic) and
    `robot-rl episodes`: the diffusion node only proposes, so every arm command is a chunk
    value_steering chose; each decision scores all num_samples candidates, and each executed
    chunk is the candidate the critic ranks first for the observation it was sampled from, and
    /policy/action_chunk carries those choices only (the diffusion node publishes no chunk)."""
    import yaml

    from tiny_policy import train_tiny

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the node processes: fair on a shared 2-core machine
    diffusion = train_tiny(tmp_path, [tmp_path / "diffusion"])[0]
    vf, value = _value_checkpoint(tmp_path / "value")  # reach: joint_pos + ee_pos + one object pose
    params = yaml.safe_load(paths.config_file("sim_steering.yaml").read_text())
    num_samples = params["diffusion_policy"]["ros__parameters"]["num_samples"]
    for topic, kind in (("/value_steering/choice", Int32), ("/value_steering/scores", Float64MultiArray),
                        (TRAJECTORY, JointTrajectory), ("/policy/candidates", JointTrajectory),
                        ("/forward_position_controller/commands", Float64MultiArray),
                        ("/joint_states", JointState), ("/task/object_poses", PoseArray),
                        ("/policy/action_chunk", JointTrajectory), ("/sim/episode_start", Header)):
        probe.subscribe(kind, topic)
    nodes.start("bringup", [sys.executable, "-m", "robot_rl.cli", "bringup", "sim_steering",
                            "-p", "task=reach", "-p", "mode=lockstep", "-p", "lockstep_timeout=1.0",
                            "-p", f"checkpoint={diffusion}", "-p", f"value_checkpoint={value}"])
    wait_for(lambda: probe.count("/value_steering/scores") > 0, 60, "the first scored decision")
    decisions = probe.count("/value_steering/scores")
    result = subprocess.run([sys.executable, "-m", "robot_rl.cli", "episodes", "--task", "reach",
                             "--num-episodes", "2", "--max-steps", "20", "--reset-service", "/sim/reset"],
                            capture_output=True, text=True, timeout=60)
    print(result.stdout, result.stderr)
    assert result.returncode == 0 and "/2 episodes succeeded" in result.stdout
    assert probe.count("/value_steering/scores") >= decisions + 5, "the episodes ran on steered chunks"
    assert probe.node.count_publishers("/policy/action_chunk") == 1, "only value_steering publishes chunks"
    assert nodes.stop("bringup", signal.SIGINT, timeout=15) == 0
    probe.settle()  # a chunk's /policy/action_chunk copy may be taken before its trajectory

    assert probe.count("/forward_position_controller/commands") == 0, "diffusion_policy must only propose"
    steered = {round(msgs.from_time(m.header.stamp), 6): msgs.trajectory_from_msg(m) for m in probe.all(TRAJECTORY)}
    chunk_stamps = [round(msgs.from_time(m.header.stamp), 6) for m in probe.all("/policy/action_chunk")]
    assert len(chunk_stamps) >= 5 and len(set(chunk_stamps)) == len(chunk_stamps), "one chunk per decision"
    for m in probe.all("/policy/action_chunk"):  # each one value_steering's executed choice
        names, times, positions = msgs.trajectory_from_msg(m)
        stamp = round(msgs.from_time(m.header.stamp), 6)
        assert stamp in steered and names == steered[stamp][0]
        np.testing.assert_allclose(positions, steered[stamp][2], atol=1e-12)
    scores = [msgs.array_from_msg(m) for m in probe.all("/value_steering/scores")]
    assert all(s.shape == (num_samples,) and np.all(np.isfinite(s)) for s in scores)
    choices = Counter(m.data for m in probe.all("/value_steering/choice"))
    assert Counter(int(np.argmax(s)) for s in scores) <= choices  # beta 0: the argmax (extra 0s: fallbacks)
    fallbacks = len(probe.all("/value_steering/choice")) - len(scores)  # no observation in time: candidate 0, unscored
    assert set(choices) - {0}, "the critic never preferred another candidate to the generalist's own"

    # Recompute each decision: the critic on the observation at the candidates' stamp, then the
    # node's guard (clamps to limits and max step from the previous chunk's last point, or from
    # the measured joint positions at the first observation of a new episode).
    lower, upper = joint_limits()
    steering = params["value_steering"]["ros__parameters"]
    steps = np.where(np.array(JOINT_NAMES) == "finger_joint", steering["gripper_max_step"], steering["max_step"])
    steps = np.where(steps > 0, steps, ARM.max_step(0.1))  # 0: the URDF's velocity limits x the tick
    candidates = {round(msg_to_candidates(m)[1], 6): msg_to_candidates(m) for m in probe.all("/policy/candidates")}
    joints = {round(msgs.from_time(m.header.stamp), 6): m for m in probe.all("/joint_states")}
    poses = {round(msgs.from_time(m.header.stamp), 6): msgs.poses_from_msg(m) for m in probe.all("/task/object_poses")}
    starts = sorted(round(msgs.from_time(m.stamp), 6) for m in probe.all("/sim/episode_start"))
    assert len(starts) >= 2, "the episodes reset the sim"
    kinematics, previous, previous_stamp, checked, reseeded, unscored = ArmKinematics(), None, None, 0, 0, 0
    for traj in probe.all(TRAJECTORY):
        names, _, positions = msgs.trajectory_from_msg(traj)
        executed = msgs.reorder(names, positions.T, JOINT_NAMES).T
        assert np.all(np.isfinite(executed)) and np.all(executed >= lower - 1e-9) and np.all(executed <= upper + 1e-9)
        stamp = round(msgs.from_time(traj.header.stamp), 6)
        new = [s for s in starts if previous_stamp is not None and previous_stamp < s <= stamp]
        if new:  # an episode started since the previous chunk: the guard starts from its first state
            start = joints.get(new[-1])
            previous = None if start is None else msgs.reorder(*msgs.joint_state_from_msg(start)[:2], JOINT_NAMES)
        if stamp < min(candidates):  # sent before the probe's /policy/candidates subscription matched (a busy CPU)
            previous, previous_stamp = executed[-1], stamp
            continue
        assert stamp in candidates, "an executed chunk that no candidate set was stamped with"
        cand_names, _, _, chunks = candidates[stamp]
        chunks = np.stack([msgs.reorder(cand_names, ch.T, JOINT_NAMES).T for ch in chunks])
        if previous is not None and stamp in joints and stamp in poses:
            jn, q, _, _ = msgs.joint_state_from_msg(joints[stamp])
            q = msgs.reorder(jn, q, JOINT_NAMES).astype(np.float32)
            obs = {"joint_pos": q, "ee_pos": kinematics.fk(q[:7])[0].astype(np.float32),
                   "object_poses": poses[stamp].astype(np.float32)}
            def guarded(chunk):
                guard = CommandGuard(JOINT_NAMES, lower, upper, steps)
                guard.reset(previous)
                return np.array([guard.apply(p).command for p in chunk])

            best = guarded(chunks[int(np.argmax(vf.score(obs, chunks)))])
            if not np.allclose(executed, best, atol=1e-6) and np.allclose(executed, guarded(chunks[0]), atol=1e-6):
                unscored += 1  # a fallback (the node logged why); each one is a choice without scores
            else:
                np.testing.assert_allclose(executed, best, atol=1e-6)
            checked += 1
            reseeded += bool(new)
        previous, previous_stamp = executed[-1], stamp
    assert checked >= 5 and reseeded >= 1 and unscored <= fallbacks, (checked, reseeded, unscored, fallbacks)


@pytest.mark.integration
def test_a_critic_on_a_point_cloud_generalist_steers_from_the_camera(nodes, probe, tmp_path, capsys, torch_one_thread):
    """No object poses anywhere: a tiny point-cloud generalist proposes candidates from the sim's
    /camera/front/points; value_steering scores them with a critic on (joint_pos, base_features),
    the features from that generalist's frozen encoder (the base the critic records) on the cloud
    at the candidates' stamp: each published score vector is the library critic's on that cloud."""
    from sensor_msgs.msg import PointCloud2

    from robot_rl.cli import main
    from robot_rl.policies import base_view
    from robot_rl.policies.diffusion.model import DiffusionPolicy
    from tiny_policy import POINTS_IMAGE_SIZE, train_tiny

    base_dir = train_tiny(tmp_path, [tmp_path / "base"], points=True, steps=(60,))[0]
    out = tmp_path / "value"
    assert main(["train", "value", "--dataset", str(tmp_path / "demos"), "--out", str(out), "--num-steps", "20",
                 "--eval-every", "10", "--hidden", "16", "--batch-size", "8", "--chunk", "4", "--no-task-space",
                 "--obs-keys", "joint_pos", base_view.KEY, "--base", str(base_dir)]) == 0
    capsys.readouterr()
    for topic, kind in (("/value_steering/scores", Float64MultiArray), ("/policy/candidates", JointTrajectory),
                        ("/joint_states", JointState)):
        probe.subscribe(kind, topic)
    probe.subscribe(PointCloud2, "/camera/front/points", QoSProfile(depth=1000, reliability=ReliabilityPolicy.BEST_EFFORT))
    width, height = POINTS_IMAGE_SIZE
    nodes.node("sim", "robot_rl.ros.mujoco_sim_node", {"task": "reach", "mode": "lockstep", "lockstep_timeout": 0.5,
                                                       "cameras": ["front"], "points": True, "image_width": width,
                                                       "image_height": height})
    nodes.node("policy", "robot_rl.ros.diffusion_policy_node", {"checkpoint": str(base_dir), "num_samples": 4,
                                                                "publish_commands": False, "use_sim_time": True})
    nodes.node("steering", NODE, {"value_checkpoint": str(out / "checkpoint"), "use_sim_time": True})
    wait_for(lambda: probe.count("/value_steering/scores") >= 8, 90, "8 scored decisions")
    assert probe.node.count_subscribers("/task/object_poses") == 0, "nothing reads the privileged poses"
    assert nodes.stop("steering") == 0
    probe.settle()

    base, value = DiffusionPolicy.from_checkpoint(base_dir), ValueFunction.from_checkpoint(out / "checkpoint")
    clouds = {round(msgs.from_time(m.header.stamp), 6): msgs.points_from_msg(m) for m in probe.all("/camera/front/points")}
    joints = {round(msgs.from_time(m.header.stamp), 6): msgs.reorder(*msgs.joint_state_from_msg(m)[:2], JOINT_NAMES)
              for m in probe.all("/joint_states")}
    library = []
    for m in probe.all("/policy/candidates"):
        names, stamp, _, chunks = msg_to_candidates(m)
        stamp = round(stamp, 6)
        if stamp in clouds and stamp in joints:
            obs = {"joint_pos": joints[stamp].astype(np.float32), **base_view.of(base, {"points": clouds[stamp]})}
            chunks = np.stack([msgs.reorder(names, ch.T, JOINT_NAMES).T for ch in chunks])
            library.append(value.score(obs, chunks))
    published = [msgs.array_from_msg(m) for m in probe.all("/value_steering/scores")]
    matched = [min(np.abs(p - q).max() for q in library) < 1e-4 for p in published]
    assert len(library) >= 5 and np.mean(matched) >= 0.9, (len(library), matched)
