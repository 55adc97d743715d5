"""Observation-to-command latency of the diffusion_policy node over DDS, vs bare inference.

This process plays a lock-step simulator: it steps `ArmEnv(task)` itself, publishes each
observation (/task/object_poses, then /joint_states, stamped with sim time) and waits for the
node's command before stepping again. The node (a real process, `request_lead 0`) runs
inference on every Ta-th observation and sends that tick's command the moment the chunk is
ready, so on those ticks "observation published -> command received" (perf_counter, here) is
the whole path: DDS both ways, the node's callbacks and forward kinematics, the hand-over to
the inference thread, `sample_chunks`, the guard. The other ticks are answered from the queued
chunk: their latency is the DDS round trip alone.

The headline pairs each chunk's latency with the node's own time for that chunk's
`sample_chunks(history, 1)` call (= `predict_chunk`; from the node's debug log), so a change of
load on a shared 2-core machine between two measurements cannot masquerade as overhead:

    dds_overhead_ratio = p50 over chunks of (obs -> command - inference) / p50 of inference

Also reported, measured in this process while the node is idle, in blocks alternating with the
ROS blocks: `predict_chunk` as a library rollout calls it (every Ta-th step, the simulator
stepping in between: the same work without ROS) and back to back (hot caches, as
bench/diffusion_latency.py times it), with `obs_to_cmd_over_bare_*_p50` = p50(obs -> command) /
p50(bare) - 1 (noisier: the two p50s come from different moments), and the node's inference p50
next to them (the node's inference is no slower than the library's).

`--obs rgb`: an RGB policy (one front camera, rgb8, the checkpoint's image size) fed the same way.

`--obs points`: a point-cloud policy fed as on a real arm: this process publishes the front
camera's depth image (32FC1) and CameraInfo, then the joint states; the node (points_source
depth, camera_pose = the camera's optical frame) back-projects, crops and downsamples to the
checkpoint's cloud, so obs -> command includes making the cloud. No /task/object_poses.

Without --checkpoint a default-config DiffusionPolicy with random weights is used (latency does
not depend on the weights; the guard keeps the arm's motion sane); with --obs points its config
reads joint_pos, ee_pos and a 512-point cloud. Progress goes to stderr; the
last stdout line is one JSON object. `measure_dds_overhead()` returns the same dict, for
bench/diffusion_latency.py (`sys.path` has bench/ when that script runs).

    python bench/diffusion_node_latency.py                    # ~1-2 min on 2 cores
    python bench/diffusion_node_latency.py --checkpoint runs/diffusion/best --task push
    python bench/diffusion_node_latency.py --obs points --task lift --image-size 128 128
    python bench/diffusion_node_latency.py --obs rgb --task lift --checkpoint runs/lift_rgb/best
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

NODE = "robot_rl.ros.diffusion_policy_node"
_CHUNK_LOG = re.compile(r"chunk (\S+): ok, inference (\S+) ms")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _stats(values_ms) -> dict:
    v = np.asarray(values_ms, dtype=float)
    if not len(v):
        return {"p50_ms": None, "p99_ms": None, "n": 0}
    return {"p50_ms": round(float(np.percentile(v, 50)), 3), "p99_ms": round(float(np.percentile(v, 99)), 3),
            "n": int(len(v))}


def _random_checkpoint(folder: Path, inputs: str = "state") -> Path:
    from robot_rl.policies.diffusion.config import DiffusionConfig
    from robot_rl.policies.diffusion.model import DiffusionPolicy

    config = DiffusionConfig()
    if inputs == "points":
        config = DiffusionConfig(obs_keys=("joint_pos", "ee_pos", "points"),
                                 obs_shapes={"joint_pos": (8,), "ee_pos": (3,), "points": (512, 6)})
    if inputs == "rgb":  # the CPU plan's encoder (docs/cameras.md): widths 16-32-64-128
        config = DiffusionConfig(obs_keys=("joint_pos", "ee_pos", "front_rgb"), rgb_widths=(16, 32, 64, 128),
                                 obs_shapes={"joint_pos": (8,), "ee_pos": (3,), "front_rgb": (96, 96, 3)})
    DiffusionPolicy(config).eval().save_checkpoint(folder)
    return folder


def _optical_pose(env, camera: str) -> list[float]:
    """x y z qx qy qz qw of a simulated camera's optical frame: the node's camera_pose."""
    import mujoco

    m = env.camera_extrinsics(camera)
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, m[:3, :3].reshape(-1))
    return [*map(float, m[:3, 3]), float(q[1]), float(q[2]), float(q[3]), float(q[0])]


def _bare_predict_ms(policy, histories: list, n: int, steps: int | None) -> list[float]:
    """predict_chunk back to back (hot caches): the library benchmark's way."""
    import torch

    gen = torch.Generator().manual_seed(0)
    for h in histories[:3]:  # warm-up: trace
        policy.predict_chunk(h, gen, steps)
    out = []
    for i in range(n):
        h = histories[i % len(histories)]
        t = time.perf_counter()
        policy.predict_chunk(h, gen, steps)
        out.append((time.perf_counter() - t) * 1e3)
    return out


def _rollout_predict_ms(policy, env, n: int, steps: int | None, seed: int, episode_ticks: int) -> list[float]:
    """predict_chunk as a library rollout calls it: every Ta-th step of an episode, the
    simulator stepping in between (the same pattern as the node's ticks, without ROS)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    ta, start = policy.config.action_horizon, policy.config.obs_horizon - 1
    out, queue, episode, i = [], [], 0, 0
    policy.reset(seed)
    obs, _ = env.reset(seed=seed)
    while len(out) < n:
        if i and i % episode_ticks == 0:
            episode += 1
            policy.reset(seed + episode)
            obs, _ = env.reset(seed=seed + episode)
            queue = []
        history = policy.observe(obs)
        if not queue:
            t = time.perf_counter()
            chunk = policy.predict_chunk(history, gen, steps)
            out.append((time.perf_counter() - t) * 1e3)
            queue = list(chunk[start:start + ta])
        obs, *_ = env.step(np.clip(queue.pop(0), env.joint_lower, env.joint_upper))
        i += 1
    return out


def measure_dds_overhead(checkpoint: str | os.PathLike | None = None, task: str = "push", ticks: int = 800,
                         episode_ticks: int = 80, bare_calls: int = 100, num_inference_steps: int = 0,
                         blocks: int = 4, seed: int = 0, node_log: str | os.PathLike | None = None,
                         inputs: str = "state", image_size=(128, 128)) -> dict:
    """Run the node against an in-process lock-step sim; return the latency figures (dict)."""
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(101, 200)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("MUJOCO_GL", "egl")
    import rclpy
    from geometry_msgs.msg import PoseArray
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image, JointState
    from std_msgs.msg import Float64MultiArray, String
    from std_srvs.srv import Trigger
    from trajectory_msgs.msg import JointTrajectory

    from robot_rl.policies.diffusion.model import DiffusionPolicy
    from robot_rl.ros import msgs
    from robot_rl.sim.env import ArmEnv

    tmp = tempfile.TemporaryDirectory(prefix="robot_rl_node_latency_")
    random_weights = checkpoint is None
    if random_weights:
        checkpoint = _random_checkpoint(Path(tmp.name) / "random_checkpoint", inputs)
        log(f"random-weight default-config checkpoint in {checkpoint}")
    checkpoint = Path(checkpoint)
    policy_config = DiffusionPolicy.from_checkpoint(checkpoint).config
    steps = num_inference_steps or None
    points, rgb = inputs == "points", inputs == "rgb"
    if points:
        env = ArmEnv(task, cameras=("front",), depth=True, points=True, image_size=tuple(image_size),
                     num_points=policy_config.obs_shapes["points"][0])
    elif rgb:  # the checkpoint's image size
        h, w = policy_config.obs_shapes["front_rgb"][:2]
        env = ArmEnv(task, cameras=("front",), image_size=(w, h))
    else:
        env = ArmEnv(task)
    log_path = Path(node_log) if node_log else Path(tmp.name) / "node.log"
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)

    ctx = Context()
    rclpy.init(context=ctx)
    node = Node("diffusion_latency_bench", context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    state = {"cmd_t": None, "chunk_stamps": set(), "status": None}
    got_cmd = threading.Event()

    def on_cmd(msg):
        state["cmd_t"] = time.perf_counter()
        state["cmd"] = msgs.array_from_msg(msg)  # joint_names order = JOINT_NAMES = env.joint_names
        got_cmd.set()

    node.create_subscription(Float64MultiArray, "/forward_position_controller/commands", on_cmd, reliable)
    node.create_subscription(JointTrajectory, "/policy/action_chunk",
                             lambda m: state["chunk_stamps"].add(round(msgs.from_time(m.header.stamp), 6)), reliable)
    node.create_subscription(String, "/diffusion_policy/status", lambda m: state.update(status=json.loads(m.data)), latched)
    pub_j = node.create_publisher(JointState, "/joint_states", reliable)
    pub_p = node.create_publisher(PoseArray, "/task/object_poses", reliable)
    pub_depth = node.create_publisher(Image, "/camera/front/depth/image_raw", reliable)
    pub_info = node.create_publisher(CameraInfo, "/camera/front/camera_info", reliable)
    pub_rgb = node.create_publisher(Image, "/camera/front/image_raw", reliable)

    def publish_observation(obs, stamp):
        if points:
            pub_info.publish(msgs.camera_info_to_msg(*env.camera_intrinsics("front"), stamp, "front_optical_frame"))
            pub_depth.publish(msgs.image_to_msg(obs["front_depth"], stamp, "front_optical_frame"))
        elif rgb:
            pub_rgb.publish(msgs.image_to_msg(obs["front_rgb"], stamp, "front_optical_frame"))
        else:
            pub_p.publish(msgs.poses_to_msg(obs["object_poses"], stamp))
        pub_j.publish(msgs.joint_state_to_msg(env.joint_names, obs["joint_pos"], obs["joint_vel"], stamp=stamp))
    reset_client = node.create_client(Trigger, "/diffusion_policy/reset")
    stop = threading.Event()
    spinner = threading.Thread(target=lambda: [executor.spin_once(timeout_sec=0.05) for _ in iter(stop.is_set, True)],
                               daemon=True)
    spinner.start()

    argv = [sys.executable, "-m", NODE, "--ros-args", "-p", f"checkpoint:={checkpoint}", "-p", "request_lead:=0",
            "-p", f"num_inference_steps:={num_inference_steps}", "-p", "max_age:=5.0", "-p", f"seed:={seed}",
            "--log-level", "diffusion_policy:=debug"]  # per-chunk inference times
    if points:
        env.reset(seed=seed)
        argv[4:4] = ["-p", "points_source:=depth", "-p", f"camera_pose:={_optical_pose(env, 'front')}"]
    observed = pub_depth if points else pub_rgb if rgb else pub_p
    with open(log_path, "wb") as f:
        proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    result: dict = {}
    try:
        deadline = time.monotonic() + 120
        while pub_j.get_subscription_count() == 0 or observed.get_subscription_count() == 0 \
                or not reset_client.service_is_ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the node did not come up; its log:\n{log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        while state["status"] is None or not state["status"].get("checkpoint"):  # loaded and warmed up
            if time.monotonic() > deadline:
                raise RuntimeError(f"no status from the node; its log:\n{log_path.read_text()[-2000:]}")
            time.sleep(0.05)

        # baselines in this process (node idle), in blocks between the ROS blocks, so a change
        # of load on a shared machine hits both alike
        bare_policy = DiffusionPolicy.from_checkpoint(checkpoint)
        obs, _ = env.reset(seed=seed)
        histories = []
        for _ in range(12):
            histories.append(bare_policy.observe(obs))
            obs, *_ = env.step(obs["joint_pos"])
        _bare_predict_ms(bare_policy, histories, 3, steps)  # warm-up (trace)

        latency: dict[float, float] = {}
        hot, bare = [], []
        sim_t, episode = 0.0, 0
        per_block = max(1, ticks // blocks)
        for block in range(blocks):
            log(f"block {block + 1}/{blocks}: predict_chunk back to back and in a library rollout, "
                f"then {per_block} lock-step ticks through the node")
            hot += _bare_predict_ms(bare_policy, histories, max(1, bare_calls // blocks), steps)
            bare += _rollout_predict_ms(bare_policy, env, max(1, bare_calls // blocks), steps, seed + 1000 + block,
                                        episode_ticks)
            obs, _ = env.reset(seed=seed + episode)
            future = reset_client.call_async(Trigger.Request())  # a fresh episode for the node too
            while not future.done():
                time.sleep(0.001)
            for i in range(per_block):
                if i and i % episode_ticks == 0:
                    episode += 1
                    future = reset_client.call_async(Trigger.Request())
                    while not future.done():
                        time.sleep(0.001)
                    obs, _ = env.reset(seed=seed + episode)
                stamp = round(sim_t, 6)
                got_cmd.clear()
                t0 = time.perf_counter()
                publish_observation(obs, stamp)
                if not got_cmd.wait(10.0):
                    raise RuntimeError(f"no command for the observation at {stamp}; node log:\n{log_path.read_text()[-2000:]}")
                latency[stamp] = (state["cmd_t"] - t0) * 1e3
                obs, *_ = env.step(state["cmd"])
                sim_t += env.control_dt
            episode += 1
        time.sleep(0.5)  # the last chunk messages and log lines

        # the node's own inference time per chunk (debug log), paired with that chunk's latency
        inference = {}
        for m in _CHUNK_LOG.finditer(log_path.read_text(errors="replace")):
            inference[round(float(m.group(1)), 6)] = float(m.group(2))
        paired = [(latency[s], inference[s]) for s in latency if s in state["chunk_stamps"] and s in inference]
        chunk_ticks = [latency[s] for s in latency if s in state["chunk_stamps"]]
        queued_ticks = [latency[s] for s in latency if s not in state["chunk_stamps"]]
        overhead = [e - i for e, i in paired]
        node_inf = [i for _, i in paired]
        e2e, rt, base, hot_s = _stats(chunk_ticks), _stats(queued_ticks), _stats(bare), _stats(hot)
        over, inf_s = _stats(overhead), _stats(node_inf)
        result = {
            "dds_overhead_ratio": round(over["p50_ms"] / inf_s["p50_ms"], 3) if paired else None,
            "dds_overhead_p50_ms": over["p50_ms"], "dds_overhead_p99_ms": over["p99_ms"], "paired_chunks": over["n"],
            "node_inference_p50_ms": inf_s["p50_ms"], "node_inference_p99_ms": inf_s["p99_ms"],
            "obs_to_cmd_inference_tick_p50_ms": e2e["p50_ms"], "obs_to_cmd_inference_tick_p99_ms": e2e["p99_ms"],
            "obs_to_cmd_inference_tick_n": e2e["n"],
            "queued_tick_round_trip_p50_ms": rt["p50_ms"], "queued_tick_round_trip_p99_ms": rt["p99_ms"],
            "queued_tick_n": rt["n"],
            "bare_predict_chunk_rollout_p50_ms": base["p50_ms"], "bare_predict_chunk_rollout_p99_ms": base["p99_ms"],
            "bare_predict_chunk_hot_loop_p50_ms": hot_s["p50_ms"], "bare_predict_chunk_hot_loop_p99_ms": hot_s["p99_ms"],
            "bare_predict_chunk_n": base["n"],
            "obs_to_cmd_over_bare_rollout_p50": round(e2e["p50_ms"] / base["p50_ms"] - 1, 3),
            "obs_to_cmd_over_bare_hot_loop_p50": round(e2e["p50_ms"] / hot_s["p50_ms"] - 1, 3),
            "node_handoff_ms_p50": (state["status"] or {}).get("handoff_ms_p50"),
            "obs": inputs, "image_size": [int(v) for v in image_size] if points else None,
            "task": task, "ticks": ticks, "action_horizon": policy_config.action_horizon,
            "num_inference_steps": steps or policy_config.num_inference_steps,
            "checkpoint": "random weights, default DiffusionConfig" if random_weights else str(checkpoint),
        }
    finally:
        stop.set()
        spinner.join(timeout=2.0)
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
        env.close()
        tmp.cleanup()
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="checkpoint folder (default: random weights, default config)")
    ap.add_argument("--task", default="push", help="task whose observations the checkpoint reads (default push)")
    ap.add_argument("--ticks", type=int, default=800, help="lock-step ticks (every Ta-th runs inference)")
    ap.add_argument("--num-inference-steps", type=int, default=0, help="DDIM steps (0: the checkpoint's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--obs", choices=("state", "points", "rgb"), default="state",
                    help="points: depth image + CameraInfo in, the node makes the cloud; rgb: the front camera's image")
    ap.add_argument("--image-size", type=int, nargs=2, default=(128, 128), metavar=("W", "H"),
                    help="--obs points: the depth camera's size")
    args = ap.parse_args()
    load_before = os.getloadavg()
    result = measure_dds_overhead(args.checkpoint, args.task, args.ticks, num_inference_steps=args.num_inference_steps,
                                  seed=args.seed, inputs=args.obs, image_size=args.image_size)
    result["env"] = {"cpu_count": os.cpu_count(), "loadavg_before": [round(x, 2) for x in load_before],
                     "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
    log(f"dds_overhead_ratio {result['dds_overhead_ratio']}: per chunk DDS + node plumbing p50 "
        f"{result['dds_overhead_p50_ms']} ms over inference p50 {result['node_inference_p50_ms']} ms; obs->command on "
        f"inference ticks p50 {result['obs_to_cmd_inference_tick_p50_ms']} ms vs bare predict_chunk p50 "
        f"{result['bare_predict_chunk_rollout_p50_ms']} ms (rollout), {result['bare_predict_chunk_hot_loop_p50_ms']} ms "
        f"(hot loop); queued-tick round trip p50 {result['queued_tick_round_trip_p50_ms']} ms")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
