"""The README's quickstart, run as written but with small counts, so that it cannot rot: the
lines between its quickstart markers, each `robot-rl` command through this Python, a trailing
`&` started in the background (the ROS graph) and stopped at the end."""
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
SMALL = {  # per verb: flags replaced (value) or added, to make each step take seconds
    "collect": {"--num-episodes": "3"},
    "train diffusion": {"--num-steps": "20", "--eval-every": "20", "--eval-episodes": "1", "--batch-size": "16",
                        "--deploy-noise-scales": None},
    "eval": {"--num-episodes": "2"},
    "episodes": {"--num-episodes": "2", "--max-steps": "15"},
}


def quickstart_lines() -> list[str]:
    text = README.read_text()
    block = re.search(r"<!-- quickstart[^>]*-->\s*```bash\n(.*?)```\s*<!-- /quickstart -->", text, re.S)
    assert block, "README.md has no quickstart block between <!-- quickstart --> markers"
    return [line.strip() for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def shortened(argv: list[str]) -> list[str]:
    verb = " ".join(argv[1:3]) if argv[1] == "train" else argv[1]
    out = list(argv)
    for flag, value in SMALL.get(verb, {}).items():
        if flag in out:
            i = out.index(flag)
            del out[i: i + 2]
        out += [flag] if value is None else [flag, value]
    return [sys.executable, "-m", "robot_rl.cli", *out[1:]]


@pytest.mark.integration
def test_the_readme_quickstart_runs(tmp_path):
    lines = quickstart_lines()
    assert [line.split()[1] for line in lines] == ["collect", "train", "eval", "bringup", "episodes"], lines
    background = []
    try:
        for line in lines:
            argv = shortened(line.rstrip("&").split())
            if line.endswith("&"):
                with open(tmp_path / "bringup.log", "wb") as log:
                    background.append(subprocess.Popen(argv, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                                                       stdin=subprocess.DEVNULL, start_new_session=True))
                continue
            result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, f"{line}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        assert "/2 episodes succeeded" in result.stdout, result.stdout
    finally:
        for p in background:
            os.killpg(p.pid, signal.SIGINT)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
    assert (tmp_path / "runs" / "lift" / "best" / "model.safetensors").is_file()
    assert (tmp_path / "runs" / "lift" / "curves.png").is_file()


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a markdown file."""
    return {re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
            for line in path.read_text().splitlines() if line.startswith("#")}


def test_every_link_between_the_docs_resolves():
    """README and docs/ link each other by file and heading: a moved section must not leave a dead link."""
    dead = []
    for md in [README, *sorted((README.parent / "docs").glob("*.md"))]:
        for link in re.findall(r"\]\(([^)\s]+)\)", md.read_text()):
            if link.startswith(("http://", "https://")):
                continue
            name, _, anchor = link.partition("#")
            target = md.parent / name if name else md
            if not target.exists() or (anchor and target.suffix == ".md" and anchor not in _anchors(target)):
                dead.append(f"{md.name}: {link}")
    assert not dead, dead
