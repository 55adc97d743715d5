"""The `robot-rl` command: one verb per module, listed in VERBS.

A verb module exposes `add_arguments(parser)` and `run(args) -> int` and is imported only when
its verb runs, so `robot-rl --help` needs neither torch nor rclpy. A RobotRLError becomes one
line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from robot_rl import __version__
from robot_rl.errors import RobotRLError

# verb -> (module, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "bringup": ("robot_rl.bringup", "start a node graph (as launch/<name>.launch.py) without ROS launch"),
    "episodes": ("robot_rl.ros.episode_runner_node", "run N episodes through the running graph and report the success rate"),
    "dataset": ("robot_rl.data.tools", "episode datasets: from-bag, info, view, merge, split, export (LeRobot), repair-bag"),
    "collect": ("robot_rl.data.collect", "roll out scripted experts in the simulator into an episode dataset"),
    "train": ("robot_rl.train.cli", "train a policy or critic: diffusion, value, residual"),
    "eval": ("robot_rl.evaluate", "success in sim of a policy, steered (V-GPS) and with a residual, same seeds"),
}


def run_verb(run, args) -> int:
    """Call a verb's run(), turning project errors into one line and exit code 2."""
    try:
        return int(run(args) or 0)
    except RobotRLError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def build_parser(verbs=None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robot-rl", description="robot_rl: learned policies on ROS 2 arms")
    parser.add_argument("--version", action="version", version=f"robot_rl {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name, (module, help_text) in VERBS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if verbs is None or name in verbs:
            mod = importlib.import_module(module)
            mod.add_arguments(p)
            p.set_defaults(_run=mod.run)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # import only the chosen verb's module (the first word that names a verb)
    chosen = next((a for a in argv if a in VERBS), None)
    parser = build_parser(verbs={chosen} if chosen else set())
    args = parser.parse_args(argv)
    return run_verb(args._run, args)


if __name__ == "__main__":
    sys.exit(main())
