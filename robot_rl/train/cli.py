"""`robot-rl train <algorithm>`: each trainer module adds its own flags and runs itself."""
from __future__ import annotations

import argparse
import importlib

TRAINERS = {
    "diffusion": ("robot_rl.train.diffusion", "behaviour cloning of a diffusion policy"),
    "value": ("robot_rl.train.value_cli", "offline Q-learning (Cal-QL / IQL) for steering"),
    "residual": ("robot_rl.train.residual_cli", "residual off-policy RL on top of a frozen base policy"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="trainer", metavar="ALGORITHM", required=True)
    for name, (module, help_text) in TRAINERS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_trainer_module=module)
        importlib.import_module(module).add_arguments(p)


def run(args: argparse.Namespace) -> int:
    return importlib.import_module(args._trainer_module).run(args)
