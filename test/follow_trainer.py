"""A minimal streaming trainer for test_offline_trainer.py: a real process that follows the dataset
with robot_rl.data.follow and, for every episode committed after it started, writes a checkpoint
folder the way robot_rl.policies.checkpoint does (one save_id across the files).

    python test/follow_trainer.py DATASET OUT
"""
import json
import sys
import uuid
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from robot_rl.data.follow import EpisodeFollower


def main() -> None:
    dataset, out = sys.argv[1], Path(sys.argv[2])
    follower = EpisodeFollower(dataset, poll_s=0.05)
    print(f"following {dataset} from episode {follower.seen}", flush=True)
    frames = 0
    for index in follower:
        frames += len(follower.dataset.load_episode(index, ["action"])["action"])
        save_id = uuid.uuid4().hex
        folder = out / "best"
        folder.mkdir(parents=True, exist_ok=True)
        # config and normalizer first, weights last: the watcher must not publish a mixed set
        (folder / "config.json").write_text(json.dumps({"episodes_seen": index + 1, "save_id": save_id}))
        (folder / "normalizer.json").write_text(json.dumps({"frames": frames, "save_id": save_id}))
        save_file({"w": np.full(4, index, np.float32)}, str(folder / "model.safetensors"),
                  metadata={"save_id": save_id})
        print(f"checkpoint after episode {index} ({frames} frames)", flush=True)


if __name__ == "__main__":
    main()
