"""`robot-rl dataset ...`: from-bag, info, merge, split, export, repair-bag.

    robot-rl dataset from-bag BAG... --out D     bags -> episodes (the live recorder's sync code)
    robot-rl dataset info D [--json]             episodes, lengths, success rate, keys and shapes
    robot-rl dataset merge D1 D2... --out D      one dataset from several (same joints, rate, keys)
    robot-rl dataset split D --val 0.1 --out-train T --out-val V    by episode, seeded
    robot-rl dataset export D --format lerobot --out L              LeRobot v3 layout
    robot-rl dataset repair-bag BAG              salvage a bag whose recorder was killed

from-bag: a bag made by our recorder holds episode markers (start/stop/discard on
/recorder/events) and the recorder's sync settings, and converts to exactly the episodes the
recorder committed live. Any other ROS 2 bag with the standard topics converts with settings
from the flags and topics found in the bag, one episode per stretch between pauses (no message for --pause
seconds) or messages on --reset-topic.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections import deque
from pathlib import Path

import numpy as np

from robot_rl.data.bag import EVENTS_TOPIC, open_bag, read_events, repair_bag
from robot_rl.data.dataset import DuplicateEpisode, EpisodeDataset
from robot_rl.data.sync import EpisodeAssembler, EpisodeRefused, Stream, SyncConfig, standard_streams
from robot_rl.errors import ConfigError, DataError
from robot_rl.robot import load_robot


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- from-bag


def _foreign_config(info_topics: dict[str, str], args) -> SyncConfig:
    """Sync settings for a bag without our markers: flags, else the standard topics in the bag."""
    topics = set(info_topics)
    if args.joint_states_topic not in topics:
        raise DataError(f"bag has no {args.joint_states_topic} topic (the reference clock); topics: {sorted(topics)}")
    cameras = args.cameras
    if cameras is None:
        cameras = sorted(t.split("/")[2] for t in topics
                         if t.startswith("/camera/") and t.endswith("/image_raw") and t.count("/") == 3)
    if args.depth is None:  # the cameras whose depth topic is in the bag
        depth = [c for c in cameras if f"/camera/{c}/depth/image_raw" in topics]
    else:
        depth = list(cameras) if args.depth else []

    def present(topic):
        return topic if topic in topics else ""

    if args.actions == "commands" and args.action_topic not in topics:
        hint = " or --actions trajectory" if args.trajectory_topic in topics else ""
        raise DataError(f"bag has no {args.action_topic} topic for the actions (topics: {sorted(topics)}); pass "
                        f"--action-topic{hint}, --actions next-joint-states (kinesthetic / teleoperation) or --actions none")
    if args.actions == "trajectory" and args.trajectory_topic not in topics:
        raise DataError(f"bag has no {args.trajectory_topic} topic for the actions (topics: {sorted(topics)})")
    action_topic = args.action_topic if args.actions == "commands" else ""
    cloud_camera = args.points_from_depth
    keep_depth = cloud_camera in depth
    if cloud_camera and not keep_depth:
        depth = [*depth, cloud_camera]
    streams = standard_streams(args.joint_states_topic, action_topic, cameras, depth,
                               present(args.object_poses_topic), present(args.reward_topic),
                               present(args.success_topic), present(args.points_topic or ""))
    if args.actions == "trajectory":
        streams += (Stream(args.trajectory_topic, "trajectory", mode="in_force"),)
    joint_names = tuple(args.joint_names or load_robot(args.robot).joint_names)
    return SyncConfig(args.rate_hz, args.max_age, joint_names, streams, args.on_gap,
                      not args.receive_time, args.ee_pose, args.robot, args.max_gap,
                      points_from_depth=cloud_camera, camera_link=args.camera_link,
                      camera_pose=tuple(args.camera_pose or ()), num_points=args.num_points, keep_depth=keep_depth)


def _with_points(config: SyncConfig, args) -> SyncConfig:
    """A recorder's settings (a bag with markers) with from-bag's --points-from-depth applied."""
    cam = args.points_from_depth
    if not cam or cam == config.points_from_depth:
        return config
    streams = list(config.streams)
    kinds = {s.kind for s in streams if s.name == cam}
    keep_depth = "depth" in kinds
    if not keep_depth:
        streams.append(Stream(f"/camera/{cam}/depth/image_raw", "depth", cam))
    if "camera_info" not in kinds:
        streams.append(Stream(f"/camera/{cam}/camera_info", "camera_info", cam))
    return dataclasses.replace(config, streams=tuple(streams), points_from_depth=cam, camera_link=args.camera_link,
                               camera_pose=tuple(args.camera_pose or ()), num_points=args.num_points,
                               keep_depth=keep_depth)


def _check_topics(bag_path, config: SyncConfig, topics: dict[str, str]) -> None:
    for stream in config.streams:
        if stream.topic not in topics:
            what = f"camera '{stream.name}' " if stream.name else ""
            raise DataError(f"bag {bag_path}: {what}topic {stream.topic} is missing (topics in the bag: "
                            f"{', '.join(sorted(topics))})")


def convert_bag(bag_path, dataset_path, args=None, log=_say) -> dict:
    """Append the episodes of one bag to the dataset at `dataset_path`; returns a report.

    `args` carries from-bag's flags (see add_arguments); None takes their defaults.
    """
    args = args or _defaults()
    report = {"bag": str(bag_path), "committed": [], "refused": [], "skipped": []}
    with open_bag(bag_path) as reader:
        for warning in reader.warnings:  # a truncated file: what is readable is used
            log(warning)
        topics = reader.topics
        has_markers = EVENTS_TOPIC in topics and reader.info.counts.get(EVENTS_TOPIC, 0) > 0
        dataset = None
        assembler = None
        episode = None  # (number, start meta) of the open episode

        def open_dataset(config: SyncConfig):
            nonlocal dataset
            if dataset is None:
                dataset = EpisodeDataset.open_or_create(dataset_path, {"joint_names": list(config.joint_names),
                                                                       "rate_hz": config.rate_hz},
                                                        load_robot(config.robot))
            return dataset

        def commit(number, frames, meta):
            try:
                index = open_dataset(assembler.config).append_episode(frames, meta)
            except DuplicateEpisode as e:  # this bag was converted into the dataset before
                report["skipped"].append({"episode": number, "reason": str(e)})
                log(f"bag {bag_path}: episode {number} skipped: {e}")
                return
            report["committed"].append({"episode": number, "index": index, "frames": len(frames["joint_pos"]),
                                        "dropped": meta["sync"].get("dropped", 0), "success": meta["success"]})

        if not has_markers:
            config = _foreign_config(topics, args)
            _check_topics(bag_path, config, topics)
            assembler = EpisodeAssembler(config, topics, reader.deserialize)
            meta = {"task": args.task, "source": _source(args), "bag": Path(bag_path).name}
            pause = int(args.pause * 1e9) if args.pause > 0 else None
            rest = _Rest(args.rest, args.rest_tolerance, config, reader.deserialize) if args.rest > 0 else None
            episodes = 0
            first = last = None
            recent: deque = deque()  # while no episode is open: the last frame period's messages

            def finish(number):
                try:
                    frames, episode_meta = assembler.stop(False, last)
                except EpisodeRefused as e:
                    if pause is None and rest is None:
                        raise DataError(f"bag {bag_path}: episode refused: {e}") from e
                    report["refused"].append({"episode": number, "reason": str(e)})
                    log(f"bag {bag_path}: episode {number} refused: {e}")
                    return
                if rest is not None:
                    frames = rest.trim(frames)
                if args.actions == "next-joint-states":  # action k: where the arm was at frame k + 1
                    positions = frames["joint_pos"]
                    frames = {k: v[:-1] for k, v in frames.items()}
                    frames["action"] = positions[1:].copy()
                    episode_meta["actions"] = "next joint states"
                episode_meta["success"] = _success_label(bag_path, args.success, frames)
                commit(number, frames, episode_meta)

            def begin(t):
                assembler.start(meta, recent[0][1] if recent else t)
                for item in recent:  # the frame just before the arm moved
                    assembler.message(*item)
                recent.clear()

            reset = args.reset_topic or None
            if reset and reset not in topics:
                raise DataError(f"bag {bag_path}: no {reset} topic to split episodes at (topics: {sorted(topics)})")
            for topic, t, raw, publish in reader.records():
                resting = rest is not None and topic == config.reference.topic and rest.still(t, raw)
                if assembler.open and ((pause is not None and t - last > pause) or topic == reset or resting):
                    if resting and not rest.moved:
                        assembler.discard()  # the arm never moved: nothing to learn from
                    else:
                        finish(episodes)  # paused, a reset, or the arm at rest: one episode ends
                        episodes += 1
                    if rest is not None:
                        rest.moved = False
                    if not resting:
                        begin(t)
                elif first is None or (rest is not None and not assembler.open and topic == config.reference.topic
                                       and not rest.resting):
                    begin(t)  # the bag's first message, or the arm moves again after a rest
                first = t if first is None else first
                assembler.message(topic, t, raw, publish)  # between episodes: camera_info only
                if not assembler.open:
                    recent.append((topic, t, raw, publish))
                    while recent and recent[0][1] < t - 1e9 / config.rate_hz - config.max_age * 1e9:
                        recent.popleft()
                last = t
            if first is None:
                raise DataError(f"bag {bag_path}: has no messages")
            if assembler.open:
                finish(episodes)
            return report

        # Every message feeds the assembler, in or out of an episode, as it did in the recorder
        # (camera_info sent before an episode still gives its intrinsics).
        starts = [e for e in read_events(reader) if e.get("event") == "start"]
        if starts:
            config = _with_points(SyncConfig.from_dict(starts[0]["sync"]), args)
            _check_topics(bag_path, config, topics)
            assembler = EpisodeAssembler(config, topics, reader.deserialize)
        for topic, t, raw, publish in reader.records():
            if topic != EVENTS_TOPIC:
                if assembler is not None:
                    assembler.message(topic, t, raw, publish)
                continue
            event = json.loads(reader.deserialize(raw, "std_msgs/msg/String", topic).data)
            kind = event.get("event")
            if kind == "start":
                config = _with_points(SyncConfig.from_dict(event["sync"]), args)
                if assembler.config != config:  # settings changed within the bag
                    _check_topics(bag_path, config, topics)
                    previous = assembler
                    assembler = EpisodeAssembler(config, topics, reader.deserialize)
                    assembler.inherit(previous)
                if assembler.open:
                    report["skipped"].append({"episode": episode[0], "reason": "no stop marker before the next start"})
                    assembler.discard()
                assembler.start(event["meta"], t, event.get("wall_ns"))
                episode = (event["episode"], event["meta"])
            elif kind in ("stop", "discard") and assembler is not None and assembler.open:
                number = event["episode"]
                if kind == "discard":
                    assembler.discard()
                    report["skipped"].append({"episode": number, "reason": event.get("reason", "discarded")})
                    continue
                try:
                    frames, meta = assembler.stop(event["success"], t)
                except DataError as e:  # EpisodeRefused included: the recorder refused it too
                    report["refused"].append({"episode": number, "reason": str(e)})
                    log(f"bag {bag_path}: episode {number} refused: {e}")
                    continue
                commit(number, frames, meta)
        if assembler is not None and assembler.open:
            report["skipped"].append({"episode": episode[0], "reason": "no stop marker (recorder killed mid-episode?)"})
    return report


class _Rest:
    """Where the arm rests in a markerless bag: every joint within `tolerance` (rad or m) of where it
    settled for `seconds`. An episode ends there (its frames at rest after the first cut off) and
    the next begins with the frame before the arm moves again."""

    def __init__(self, seconds: float, tolerance: float, config, deserialize):
        from robot_rl.data.sync import Decoder

        self.ns, self.tolerance = int(seconds * 1e9), tolerance
        self.stream = config.reference
        self.decoder = Decoder(config, {self.stream.topic: "sensor_msgs/msg/JointState"}, deserialize)
        self.anchor: np.ndarray | None = None
        self.since = 0
        self.resting = False  # still for `seconds` already
        self.moved = False  # since the last rest: the episode has motion in it

    def still(self, t: int, raw) -> bool:
        """Feed one joint state; True when this one makes the arm at rest (once per rest)."""
        q = self.decoder.decode(self.stream, raw)["joint_pos"]
        if self.anchor is None or np.max(np.abs(q - self.anchor)) > self.tolerance:
            self.moved = self.moved or self.anchor is not None
            self.anchor, self.since, self.resting = q, t, False
            return False
        if not self.resting and t - self.since >= self.ns:
            self.resting = True
            return True
        return False

    def trim(self, frames: dict) -> dict:
        """Drop the frames at rest at the end of an episode, but the first (the arm arrived)."""
        q = frames["joint_pos"]
        n = len(q)
        while n > 1 and np.max(np.abs(q[n - 2] - q[-1])) <= self.tolerance:
            n -= 1
        return {k: v[:n] for k, v in frames.items()}


def _success_label(bag_path, choice: str, frames: dict) -> bool:
    if choice == "true":
        return True
    if choice == "false":
        return False
    if "success" not in frames:
        raise DataError(f"bag {bag_path}: no success topic to label the episode; pass --success true or false")
    return bool(frames["success"].any())


def _source(args) -> dict:
    source = {"kind": args.source_kind}
    for key in ("quality", "policy", "checkpoint"):
        value = getattr(args, f"source_{key}", "")
        if value:
            source[key] = value
    return source


def from_bag(bags, out, args=None, log=_say) -> list[dict]:
    reports = []
    for bag in bags:
        report = convert_bag(bag, out, args, log)
        frames = sum(c["frames"] for c in report["committed"])
        dropped = sum(c["dropped"] for c in report["committed"])
        log(f"{bag}: {len(report['committed'])} episodes committed ({frames} frames, {dropped} dropped inside "
            f"episodes: see each episode's meta sync.dropped_frames), {len(report['refused'])} refused, "
            f"{len(report['skipped'])} skipped")
        reports.append(report)
    if not any(r["committed"] for r in reports):
        reasons = [x["reason"] for r in reports for x in r["refused"] + r["skipped"]]
        raise DataError(f"no episode could be converted from {', '.join(map(str, bags))}"
                        + (f": {reasons[0]}" if reasons else ""))
    return reports


# ---------------------------------------------------------------------------- info, merge, split


def dataset_info(path) -> dict:
    ds = EpisodeDataset.open(path)
    lengths = ds.episode_lengths
    sources: dict[str, int] = {}
    tasks: dict[str, int] = {}
    for i in range(ds.num_episodes):
        meta = ds.episode_meta(i)
        src = meta.get("source")
        label = src.get("kind", "?") if isinstance(src, dict) else str(src)
        if isinstance(src, dict) and src.get("quality"):
            label += f":{src['quality']}"
        sources[label] = sources.get(label, 0) + 1
        tasks[str(meta.get("task", ""))] = tasks.get(str(meta.get("task", "")), 0) + 1
    return {
        "path": str(path),
        "episodes": ds.num_episodes,
        "frames": int(lengths.sum()),
        "length": {"min": int(lengths.min()), "mean": round(float(lengths.mean()), 2), "max": int(lengths.max())}
        if len(lengths) else {},
        "success_rate": round(float(ds.success.mean()), 4) if ds.num_episodes else None,
        "rate_hz": ds.meta["rate_hz"],
        "joint_names": ds.meta.get("joint_names"),
        "names": {k: ds.names(k) for k in ds.keys if ds.names(k)},
        "keys": {k: {"shape": v["shape"], "dtype": v["dtype"]} for k, v in ds.keys.items()},
        "tasks": tasks,
        "sources": sources,
    }


def _print_info(info: dict) -> None:
    print(f"dataset {info['path']}: {info['episodes']} episodes, {info['frames']} frames at {info['rate_hz']} Hz")
    if info["episodes"]:
        ln = info["length"]
        print(f"  length min {ln['min']}, mean {ln['mean']}, max {ln['max']}; success rate {info['success_rate']:.3f}")
    if info["joint_names"]:
        print(f"  joints: {', '.join(info['joint_names'])}")
    print(f"  tasks: {info['tasks']}; sources: {info['sources']}")
    for key, spec in info["keys"].items():
        print(f"  {key:<16} {str(tuple(spec['shape'])):<16} {spec['dtype']}")


def copy_episodes(src: EpisodeDataset, dst: EpisodeDataset, episodes, log=_say) -> int:
    """Copy episodes; one `dst` holds already (the same frames) is skipped and said so."""
    n = 0
    for i in episodes:
        meta = src.episode_meta(i)
        try:
            dst.append_episode(src.load_episode(i), meta)
        except DuplicateEpisode as e:
            log(f"{src.root} episode {i} skipped: {e}")
            continue
        n += 1
    return n


def merge(inputs, out, log=_say) -> EpisodeDataset:
    sources = [EpisodeDataset.open(p) for p in inputs]
    first = sources[0]
    for p, ds in zip(inputs, sources):
        for field in ("joint_names", "rate_hz", "names"):
            if ds.meta.get(field) != first.meta.get(field):
                raise DataError(f"{p}: {field} {ds.meta.get(field)} differs from {inputs[0]}'s "
                                f"{first.meta.get(field)}; only datasets of one arm and rate merge")
        if ds.keys and first.keys and ds.keys != first.keys:
            raise DataError(f"{p}: keys {sorted(ds.keys)} differ from {inputs[0]}'s {sorted(first.keys)}")
    robots = {ds.robot.kinematic_hash if ds.robot else None for ds in sources}
    if len(robots) > 1:
        raise DataError(f"the datasets {list(map(str, inputs))} come from different robots; only datasets of one arm merge")
    dst = EpisodeDataset.create(out, {**first.layout(), "merged_from": [str(p) for p in inputs]}, first.robot)
    for ds in sources:
        copy_episodes(ds, dst, range(ds.num_episodes), log)
    return dst


def split(path, out_train, out_val, val_fraction: float = 0.1, seed: int = 0) -> tuple[list[int], list[int]]:
    """Episodes shuffled with `seed`, the first round(val_fraction * N) (at least 1) to val."""
    if not 0 < val_fraction < 1:
        raise ConfigError(f"--val must be in (0, 1), got {val_fraction}")
    ds = EpisodeDataset.open(path)
    if ds.num_episodes < 2:
        raise DataError(f"{path}: {ds.num_episodes} episodes; a split needs at least 2")
    order = np.random.default_rng(seed).permutation(ds.num_episodes)
    n_val = min(ds.num_episodes - 1, max(1, int(round(val_fraction * ds.num_episodes))))
    val, train = sorted(order[:n_val].tolist()), sorted(order[n_val:].tolist())
    for out, episodes, name in ((out_train, train, "train"), (out_val, val, "val")):
        dst = EpisodeDataset.create(out, {**ds.layout(), "split": {"of": str(path), "part": name, "seed": seed,
                                                                   "episodes": episodes}}, ds.robot)
        copy_episodes(ds, dst, episodes)
    return train, val


# ---------------------------------------------------------------------------- CLI


def _defaults():
    parser = argparse.ArgumentParser()
    _from_bag_arguments(parser)
    return parser.parse_args(["x", "--out", "y"])


def _from_bag_arguments(p) -> None:
    p.add_argument("bags", nargs="+", metavar="BAG", help="rosbag2 directories")
    p.add_argument("--out", required=True, help="dataset directory (created or appended to)")
    g = p.add_argument_group("bags without recorder markers (episodes split where the arm pauses)")
    g.add_argument("--rate-hz", type=float, default=10.0)
    g.add_argument("--max-age", type=float, default=0.05, help="s; keep below 1/rate")
    g.add_argument("--on-gap", choices=["drop", "refuse", "mark"], default="drop",
                   help="frames a stream has no message for: drop them (counted), refuse the episode, or mark them")
    g.add_argument("--max-gap", type=float, default=1.0, help="s: --on-gap drop refuses an episode missing frames for longer")
    g.add_argument("--robot", default="arm", help="the robot the bag comes from: arm, ur_arm, or a URDF path")
    g.add_argument("--joint-names", nargs="+", default=None, help="joint order of the dataset; default: the robot's")
    g.add_argument("--joint-states-topic", default="/joint_states")
    g.add_argument("--action-topic", default="/forward_position_controller/commands")
    g.add_argument("--actions", choices=["commands", "trajectory", "next-joint-states", "none"], default="commands",
                   help="the action label: the commands topic; the trajectory topic (the trajectory in force, "
                        "sampled at the frame's time); the next frame's joint positions (kinesthetic teaching, "
                        "teleoperation recorded without commands); or none")
    g.add_argument("--trajectory-topic", default="/joint_trajectory_controller/joint_trajectory")
    g.add_argument("--cameras", nargs="*", default=None, help="default: every /camera/<cam>/image_raw in the bag")
    g.add_argument("--depth", action=argparse.BooleanOptionalAction, default=None)
    g.add_argument("--object-poses-topic", default="/task/object_poses")
    g.add_argument("--reward-topic", default="/task/reward")
    g.add_argument("--success-topic", default="/task/success")
    g.add_argument("--points-topic", default="", help="sensor_msgs/PointCloud2 (any frame, any size): resampled "
                   "to --num-points in the base frame")
    g.add_argument("--points-from-depth", default="", metavar="CAM",
                   help="make the policy's points from /camera/CAM/depth/image_raw + camera_info")
    g.add_argument("--camera-link", default="", help="URDF link of that camera's optical frame (a wrist camera)")
    g.add_argument("--camera-pose", type=float, nargs=7, default=(), metavar=("X", "Y", "Z", "QX", "QY", "QZ", "QW"),
                   help="or the optical frame's pose in the base frame (a camera outside the URDF)")
    g.add_argument("--num-points", type=int, default=512)
    g.add_argument("--receive-time", action="store_true", help="align on bag receive times, not header stamps")
    g.add_argument("--reset-topic", default="",
                   help="each message on this topic (e.g. /sim/episode_start) ends an episode and starts the next")
    g.add_argument("--pause", type=float, default=2.0,
                   help="s: a bag silent this long ends an episode and starts the next (0: one episode per bag)")
    g.add_argument("--rest", type=float, default=0.0,
                   help="s: the arm still this long (joint states still coming) ends an episode; the next "
                        "begins when it moves (0: off)")
    g.add_argument("--rest-tolerance", type=float, default=0.002,
                   help="rad (or m): joint motion below this counts as still, for --rest")
    g.add_argument("--ee-pose", action=argparse.BooleanOptionalAction, default=True,
                   help="add ee_pos/ee_quat by forward kinematics of the robot")
    g.add_argument("--task", default="")
    g.add_argument("--success", choices=["auto", "true", "false"], default="auto",
                   help="episode label; auto: true when the success topic ever says so")
    g.add_argument("--source-kind", default="other", choices=["scripted_expert", "teleop", "policy", "other"])
    g.add_argument("--source-quality", default="")
    g.add_argument("--source-policy", default="")
    g.add_argument("--source-checkpoint", default="")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    _from_bag_arguments(sub.add_parser("from-bag", help="convert rosbag2 bags into episodes"))
    p = sub.add_parser("from-arrays", help="your own arrays (.npz, or a Diffusion Policy .zarr) into episodes")
    p.add_argument("source", help=".npz with one array per key (all frames back to back) and episode_ends, "
                                  "or a zarr folder with data/<key> and meta/episode_ends")
    p.add_argument("--out", required=True, help="dataset directory (created or appended to)")
    p.add_argument("--rate-hz", type=float, required=True, help="frames per second of the data")
    p.add_argument("--names", nargs="*", default=[], metavar="KEY=A,B,...",
                   help="names of a key's values, e.g. action=dx,dy,dz,gripper")
    p.add_argument("--joint-names", nargs="+", default=None,
                   help="for an arm's data: joint_pos / joint_vel / action hold these joints, in this order")
    p.add_argument("--task", default="")
    p = sub.add_parser("from-lerobot", help="a local LeRobot v3.0 dataset (parquet + MP4) into episodes")
    p.add_argument("source", help="the LeRobot dataset folder (meta/, data/, videos/)")
    p.add_argument("--out", required=True, help="dataset directory (created or appended to)")
    p.add_argument("--map", nargs="*", default=[], metavar="FEATURE=KEY",
                   help="store a feature under another key, e.g. observation.state=joint_pos")
    p.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("W", "H"),
                   help="resize camera frames (default: as stored)")
    p = sub.add_parser("info", help="episodes, lengths, success rate, keys and shapes")
    p.add_argument("dataset")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p = sub.add_parser("merge", help="merge datasets (same joints, rate and keys)")
    p.add_argument("datasets", nargs="+")
    p.add_argument("--out", required=True)
    p = sub.add_parser("split", help="split into train and val datasets by episode")
    p.add_argument("dataset")
    p.add_argument("--val", type=float, default=0.1, help="fraction of episodes for val")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-train", required=True)
    p.add_argument("--out-val", required=True)
    p = sub.add_parser("export", help="export to another format")
    p.add_argument("dataset")
    p.add_argument("--format", choices=["lerobot"], default="lerobot")
    p.add_argument("--out", required=True)
    p.add_argument("--repo-id", default="local/robot_rl", help="LeRobot repo id written to info.json")
    p.add_argument("--robot-type", default="robot_rl_arm")
    p = sub.add_parser("repair-bag", help="salvage the files a killed recorder left open")
    p.add_argument("bag")
    p = sub.add_parser("view", help="an episode as pictures: low-dim keys plotted (PNG), each camera as an MP4")
    p.add_argument("dataset")
    p.add_argument("--episode", type=int, default=0)
    p.add_argument("--out", required=True, help="folder for episode_<i>.png and episode_<i>_<cam>.mp4")


def run(args) -> int:
    if args.action == "from-bag":
        reports = from_bag(args.bags, args.out, args)
        n = sum(len(r["committed"]) for r in reports)
        print(f"{n} episodes from {len(args.bags)} bag(s) into {args.out}")
    elif args.action == "from-arrays":
        from robot_rl.data.arrays import parse_names, read_arrays, write_arrays

        names = parse_names(args.names)
        arrays, ends = read_arrays(args.source)
        write_arrays(args.out, arrays, ends, args.rate_hz, names=names, task=args.task,
                     joint_names=args.joint_names, source={"arrays": str(Path(args.source).resolve())})
    elif args.action == "from-lerobot":
        from robot_rl.data.lerobot_import import import_lerobot

        mapping = dict(item.partition("=")[::2] for item in args.map)
        if any(not f or not k for f, k in mapping.items()):
            raise ConfigError(f"--map {' '.join(args.map)}: write FEATURE=KEY, e.g. observation.state=joint_pos")
        import_lerobot(args.source, args.out, mapping, tuple(args.image_size) if args.image_size else None)
    elif args.action == "info":
        info = dataset_info(args.dataset)
        print(json.dumps(info)) if args.json else _print_info(info)
    elif args.action == "merge":
        ds = merge(args.datasets, args.out)
        print(f"merged {len(args.datasets)} datasets into {args.out}: {ds.num_episodes} episodes")
    elif args.action == "split":
        train, val = split(args.dataset, args.out_train, args.out_val, args.val, args.seed)
        print(f"split {args.dataset}: {len(train)} train episodes -> {args.out_train}, "
              f"{len(val)} val episodes -> {args.out_val}")
    elif args.action == "export":
        from robot_rl.data.lerobot import export_lerobot

        out = export_lerobot(args.dataset, args.out, repo_id=args.repo_id, robot_type=args.robot_type)
        print(f"exported {args.dataset} to {out} (LeRobot v3.0 layout)")
    elif args.action == "view":
        from robot_rl.cli_checks import output_folder
        from robot_rl.data.view import view_episode

        for path in view_episode(args.dataset, args.episode, output_folder("--out", args.out)):
            print(f"wrote {path}")
    elif args.action == "repair-bag":
        recovered = repair_bag(args.bag)
        if not recovered:
            print(f"bag {args.bag}: nothing to repair")
        for name, n in recovered.items():
            print(f"bag {args.bag}: salvaged {n} messages from {name}")
    return 0


_ = Stream  # re-exported for callers building custom stream lists
