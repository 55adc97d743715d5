"""residual_policy node over DDS: a zero residual is the base exactly; commands stay within the
joint limits whatever the residual; `learn: true` on the sim_residual graph (MuJoCo + a tiny
diffusion base) updates, and on SIGINT leaves a checkpoint and a replay buffer that load back."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
from geometry_msgs.msg import PoseArray
from sensor_msgs.msg import JointState
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Float64MultiArray, Header
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from robot_rl.data.replay import ReplayBuffer
from robot_rl.policies.chunk_context import from_chunk
from robot_rl.policies.features import state_vector
from robot_rl.policies.residual.model import ResidualActor, ResidualPolicy, default_normalizer
from robot_rl.policies.residual.space import CORRECTION_CLIP, space_for
from robot_rl.ros import msgs
from robot_rl.ros.residual_policy_node import chunk_on_grid
from arms import HOME_QPOS, JOINT_NAMES, joint_limits
from arms import tcp_positions
from ros_helpers import wait_for
from tiny_policy import train_tiny
from test_residual_online import tiny, wild

pytestmark = pytest.mark.integration

NODE = "robot_rl.ros.residual_policy_node"
SIM = "robot_rl.ros.mujoco_sim_node"
POLICY = "robot_rl.ros.diffusion_policy_node"
FORWARD = "/forward_position_controller/commands"
SEEDS = [4, 5]
CUBE = np.array([[0.5, 0.0, 0.02, 1, 0, 0, 0]])
KEYS = ("joint_pos", "ee_pos", "object_poses")


def residual_checkpoint(path, cfg, obs_dim: int, saturated: bool = False):
    actor = ResidualActor(obs_dim, cfg, default_normalizer(obs_dim))
    return ResidualPolicy(None, wild(actor) if saturated else actor, cfg).save(path)


class Observations:
    """The test as the arm and the base: joint states + poses per tick, chunks on demand."""

    def __init__(self, probe):
        self.probe = probe
        probe.subscribe(Float64MultiArray, FORWARD)
        self.joints = probe.publisher(JointState, "/joint_states")
        self.poses = probe.publisher(PoseArray, "/task/object_poses")
        self.chunks = probe.publisher(JointTrajectory, "/policy/action_chunk")

    def tick(self, t: float, answered: bool = True, poses_stamp: float | None = None):
        n = self.probe.count(FORWARD)
        self.poses.publish(msgs.poses_to_msg(CUBE, t if poses_stamp is None else poses_stamp))
        self.joints.publish(msgs.joint_state_to_msg(JOINT_NAMES, HOME_QPOS, stamp=t))
        return self.command(n) if answered else n

    def chunk(self, stamp: float, actions, names=JOINT_NAMES, n: int | None = None):
        n = self.probe.count(FORWARD) if n is None else n
        self.chunks.publish(msgs.trajectory_to_msg(names, 0.1 * np.arange(len(actions)), actions, stamp))
        return n

    def command(self, n: int) -> np.ndarray:
        wait_for(lambda: self.probe.count(FORWARD) > n, 10, f"command {n + 1}")
        assert self.probe.count(FORWARD) == n + 1, "one command per tick"
        return msgs.array_from_msg(self.probe.latest(FORWARD))


def test_chunk_on_grid_resamples_other_spacings():
    actions = np.stack([np.arange(3.0), -np.arange(3.0)], 1)
    assert chunk_on_grid(np.array([0.0, 0.1, 0.2]), actions, 0.1) is actions
    np.testing.assert_allclose(chunk_on_grid(np.array([0.0, 0.2, 0.4]), actions, 0.1)[:, 0], [0, 0.5, 1, 1.5, 2])


def test_zero_residual_commands_are_the_base_chunks_actions(nodes, probe, tmp_path):
    """The test is the arm and the base: each command is, bit for bit, the chunk action for its
    tick (passed actions skipped, joints mapped by name); stale poses or no chunk: no command."""
    ckpt = residual_checkpoint(tmp_path / "zero", tiny(obs_keys=KEYS), 8 + 3 + 7)
    nodes.node("residual", NODE, {"residual_checkpoint": str(ckpt), "max_age": 1.0})
    arm = Observations(probe)
    rng = np.random.default_rng(SEEDS[0])
    # 3-action chunks: each tick after a chunk's end waits for the next chunk, whatever arrives first
    first, second, third = (np.clip(HOME_QPOS + rng.normal(0, 0.05, (3, 8)), *joint_limits()) for _ in range(3))
    time.sleep(1.0)  # every subscription matched both ways
    n = arm.tick(10.0, answered=False)  # no chunk yet: the tick waits for one ...
    time.sleep(0.3)
    assert probe.count(FORWARD) == n
    np.testing.assert_array_equal(arm.command(arm.chunk(10.0, first, n=n)), first[0])  # ... and takes its action 0
    np.testing.assert_array_equal(arm.tick(10.1), first[1])
    np.testing.assert_array_equal(arm.tick(10.2), first[2])
    arm.chunk(10.2, second)  # arrives after its observation's tick was answered: action 0 has passed
    np.testing.assert_array_equal(arm.tick(10.3), second[1])
    np.testing.assert_array_equal(arm.tick(10.4), second[2])
    arm.chunk(10.5, third[:, ::-1], names=JOINT_NAMES[::-1])  # another joint order: mapped by name
    np.testing.assert_array_equal(arm.tick(10.5), third[0])
    arm.chunk(11.0, first)
    n = arm.tick(11.0, answered=False, poses_stamp=9.0)  # poses older than max_age: hold
    wait_for(lambda: "/task/object_poses is 2.00 s older" in nodes.log("residual"), 10, "the stale-poses warning")
    time.sleep(0.3)
    assert probe.count(FORWARD) == n
    np.testing.assert_array_equal(arm.tick(11.1), first[1])  # fresh again
    n = arm.tick(11.5, answered=False)  # no chunk covers it: hold
    wait_for(lambda: "no base action came for the tick at 11.500" in nodes.log("residual"), 10, "the hold warning")
    assert probe.count(FORWARD) == n


def test_a_new_episodes_chunk_before_its_first_joint_states_drives_that_tick(nodes, probe, tmp_path):
    """A fast base answers the new episode's first observation before the node has seen it:
    /sim/episode_start, then the base's chunk stamped with that observation, then its
    /joint_states. The chunk is the new episode's, so the first tick takes its action 0 at once
    (no chunk dropped by the episode reset, no hold until the next chunk)."""
    ckpt = residual_checkpoint(tmp_path / "zero", tiny(obs_keys=KEYS), 8 + 3 + 7)
    nodes.node("residual", NODE, {"residual_checkpoint": str(ckpt), "max_age": 2.0})
    arm = Observations(probe)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    episode = probe.node.create_publisher(Header, "/sim/episode_start", latched)
    wait_for(lambda: episode.get_subscription_count() > 0, 15, "a subscriber on /sim/episode_start")
    rng = np.random.default_rng(SEEDS[0])
    old, new = (np.clip(HOME_QPOS + rng.normal(0, 0.05, (3, 8)), *joint_limits()) for _ in range(2))
    time.sleep(1.0)  # every subscription matched both ways
    np.testing.assert_array_equal(arm.command(arm.chunk(30.0, old, n=arm.tick(30.0, answered=False))), old[0])
    np.testing.assert_array_equal(arm.tick(30.1), old[1])  # the old episode, mid-chunk

    episode.publish(msgs.header(31.0))
    time.sleep(0.3)
    n = arm.chunk(31.0, new)  # the base's chunk for the new episode's first observation ...
    time.sleep(0.3)
    np.testing.assert_array_equal(arm.tick(31.0), new[0])  # ... drives the tick when it comes
    np.testing.assert_array_equal(arm.tick(31.1), new[1])
    log = nodes.log("residual")
    assert probe.count(FORWARD) == n + 2 and "reset: episode starting at 31.000" in log, log
    assert "holding" not in log, log


def test_commands_stay_within_joint_limits_with_a_large_residual(nodes, probe, tmp_path):
    """A saturated residual of 1 rad on base actions at and beyond the limits; a NaN base action."""
    lo, hi = joint_limits()
    cfg = tiny(obs_keys=KEYS, residual_scale=(1.0,) * 8)
    ckpt = residual_checkpoint(tmp_path / "wild", cfg, 8 + 3 + 7, saturated=True)
    nodes.node("residual", NODE, {"residual_checkpoint": str(ckpt), "max_age": 2.0, "max_step": 10.0, "gripper_max_step": 1.0})
    arm = Observations(probe)
    rng = np.random.default_rng(SEEDS[1])
    base = lo - 0.3 + (hi - lo + 0.6) * rng.random((24, 8))  # inside, at and beyond the limits
    base[:4] = [lo, hi, lo - 0.5, hi + 0.5]
    base[10, 3] = np.nan  # refused: the last safe command is held
    time.sleep(1.0)
    commands = [arm.command(arm.chunk(20.0, base, n=arm.tick(20.0, answered=False)))]
    commands += [arm.tick(20.0 + 0.1 * k) for k in range(1, len(base))]
    commands = np.array(commands)
    assert np.all(np.isfinite(commands))
    assert np.all(commands >= lo) and np.all(commands <= hi)
    np.testing.assert_array_equal(commands[10], commands[9])
    assert "refused" in nodes.log("residual")
    assert np.abs(commands - np.clip(base, lo, hi))[~np.isnan(base)].max() > 0.2, "the residual acts"


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("residual_base")
    return train_tiny(root, [root / "base"], steps=(100,))[0]


KEYS_ONLINE = ("joint_pos", "joint_vel", "ee_pos", "object_poses")


@pytest.mark.parametrize("space, derived", [("joint", ()), ("task", ("object_rel", "target_rel", "chunk_end_rel", "chunk_left"))])
def test_learns_online_on_the_sim_and_saves_on_sigint(nodes, probe, tmp_path, base_checkpoint, space, derived):
    """sim_residual in lock-step (sim + diffusion base without commands + residual learning), a few
    short episodes through /sim/reset; SIGINT writes the checkpoint and the buffer. With derived
    features, the stored states carry them, computed from the base action of their tick and where
    it sits in its chunk."""
    from robot_rl.sim.env import ArmEnv

    keys = KEYS_ONLINE + derived
    env = ArmEnv("reach")
    cfg = tiny(obs_keys=keys, warmup_steps=1000, residual_space=space)
    obs0 = env.reset(seed=0)[0]
    obs0.update(from_chunk(obs0["joint_pos"][None], 0))  # a chunk of one: only the sizes matter here
    obs_dim = len(state_vector(obs0, keys, obs0["joint_pos"], "arm")) + space_for(cfg).feature_dim
    env.close()
    ckpt = residual_checkpoint(tmp_path / "start", cfg, obs_dim)
    out = tmp_path / "online"
    probe.subscribe(Float64MultiArray, FORWARD)
    nodes.node("sim", SIM, {"task": "reach", "mode": "lockstep", "lockstep_timeout": 0.5})
    nodes.node("policy", POLICY, {"checkpoint": str(base_checkpoint), "publish_commands": False,
                                  "request_lead": 1, "use_sim_time": True})
    nodes.node("residual", NODE, {"residual_checkpoint": str(ckpt), "learn": True, "out_dir": str(out), "use_sim_time": True,
                                  "warmup_steps": 10, "batch_size": 16, "critic_warmup_updates": 5,
                                  "exploration_noise": 0.1, "checkpoint_every": 20})
    for episode in range(3):
        n = probe.count(FORWARD)
        wait_for(lambda: probe.count(FORWARD) >= n + 15, 40, f"15 commands in episode {episode}")
        assert probe.call(Trigger, "/sim/reset").success
    wait_for(lambda: "updates, " in nodes.log("residual"), 20, "a periodic checkpoint")
    assert nodes.stop("residual") == 0
    log = nodes.log("residual")
    assert log.count("reset: episode starting") >= 3, log

    saved = json.loads((out / "checkpoint" / "config.json").read_text())
    assert saved["updates"] >= 20 and saved["batch_size"] == 16 and saved["warmup_steps"] == 10
    assert saved["exploration_noise"] == 0.1
    ResidualPolicy.from_checkpoint(out / "checkpoint")
    buf = ReplayBuffer(saved["buffer_size"], obs_dim, 8, cfg.correction_dim)
    buf.load(out / "replay.npz")
    assert buf.size == saved["env_steps"] >= 30
    # actions are stored as the corrections the executed commands made (after the guard), bounded
    assert np.all(np.abs(buf.data["action"][: buf.size]) <= CORRECTION_CLIP)
    assert np.abs(buf.data["action"][: buf.size]).max() > 0  # exploration noise moved the arm
    if derived:  # goal relative to the TCP, then to where the tick's base action sends it
        states, bases = buf.data["obs"][: buf.size], buf.data["base"][: buf.size]
        at = len(state_vector(obs0, KEYS_ONLINE))
        goal, ee = states[:, at - 7: at - 4], states[:, at - 10: at - 7]
        np.testing.assert_allclose(states[:, at: at + 3], goal - ee, atol=1e-5)
        np.testing.assert_allclose(states[:, at + 3: at + 6], goal - tcp_positions(bases), atol=1e-5)
        # the base's chunks (request_lead 1: chunk_lead 1) run down to their last executed action,
        # where the chunk's end is the tick's own base action
        left = states[:, at + 9]
        assert left.min() == 0.0 and 0.0 < left.max() < 1.0 and len(np.unique(left)) >= 2
        last = left == 0.0
        np.testing.assert_allclose(states[last, at + 6: at + 9], states[last, at + 3: at + 6], atol=1e-5)
        assert np.abs(states[~last, at + 6: at + 9] - states[~last, at + 3: at + 6]).max() > 1e-3


def test_learning_without_a_checkpoint_standardises_and_fills_the_demo_buffer_from_labelled_demos(nodes, tmp_path):
    """learn with demo_dataset + base_checkpoint and no residual_checkpoint: the base labels the demos
    once; their states size and standardise the new residual, and their transitions fill the demo buffer."""
    from robot_rl.data.collect import collect

    demos = collect("reach", tmp_path / "demos", 2, seed=5, progress=False)
    steps = sum(len(demos.load_episode(i)["action"]) for i in range(2))
    nodes.node("residual", NODE, {"learn": True, "demo_dataset": str(tmp_path / "demos"),
                                  "base_checkpoint": "expert:reach", "out_dir": str(tmp_path / "online")})
    wait_for(lambda: "demo transitions" in nodes.log("residual"), 60, "the demos relabelled")
    assert f"relabelled {steps} demo transitions" in nodes.log("residual") and demos.success.all()
    assert nodes.stop("residual") == 0


def test_a_residual_on_a_point_cloud_base_reads_its_features_from_the_camera(nodes, probe, tmp_path):
    """No object poses anywhere: sim_residual with a tiny point-cloud base; the residual node runs
    that base's frozen encoder on /camera/front/points (base_checkpoint), and every state it learns
    from carries exactly the features the library computes from the cloud of its tick."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2

    from robot_rl.policies.diffusion.model import DiffusionPolicy
    from tiny_policy import POINTS_IMAGE_SIZE

    base_dir = train_tiny(tmp_path, [tmp_path / "base"], points=True, steps=(60,))[0]
    keys = ("joint_pos", "joint_vel", "base_features", "chunk_end", "chunk_left")
    cfg = tiny(obs_keys=keys, warmup_steps=1000)
    obs_dim = 8 + 8 + 16 + 8 + 1  # joints, velocities, the base's 16 point features, the chunk's end and share left
    ckpt = residual_checkpoint(tmp_path / "start", cfg, obs_dim)
    out = tmp_path / "online"
    probe.subscribe(Float64MultiArray, FORWARD)
    probe.subscribe(PointCloud2, "/camera/front/points", QoSProfile(depth=1000, reliability=ReliabilityPolicy.BEST_EFFORT))
    width, height = POINTS_IMAGE_SIZE
    nodes.node("sim", SIM, {"task": "reach", "mode": "lockstep", "lockstep_timeout": 0.5, "cameras": ["front"],
                            "points": True, "image_width": width, "image_height": height})
    nodes.node("policy", POLICY, {"checkpoint": str(base_dir), "publish_commands": False, "request_lead": 1,
                                  "use_sim_time": True})
    nodes.node("residual", NODE, {"residual_checkpoint": str(ckpt), "base_checkpoint": str(base_dir), "learn": True,
                                  "out_dir": str(out), "use_sim_time": True, "warmup_steps": 10, "batch_size": 16,
                                  "critic_warmup_updates": 5, "checkpoint_every": 1000})
    wait_for(lambda: probe.count(FORWARD) >= 25, 60, "25 commands")
    assert nodes.stop("residual") == 0
    log = nodes.log("residual")
    assert "object_poses" not in log, log

    saved = json.loads((out / "checkpoint" / "config.json").read_text())
    buf = ReplayBuffer(saved["buffer_size"], obs_dim, 8, cfg.correction_dim)
    buf.load(out / "replay.npz")
    assert buf.size >= 20
    seen = buf.data["obs"][: buf.size, 16:32]
    base = DiffusionPolicy.from_checkpoint(base_dir)
    clouds = [msgs.points_from_msg(m) for m in probe.all("/camera/front/points")]
    library = np.stack([base.scene_features({"points": c}) for c in clouds])
    nearest = np.abs(seen[:, None] - library[None]).max(-1).min(1)  # each state against every cloud's features
    assert (nearest < 1e-5).mean() >= 0.9, nearest  # the probe's best-effort copy may miss a cloud
    assert np.ptp(seen, 0).max() > 1e-3  # the arm moved: what the base sees changed
