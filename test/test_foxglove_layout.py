"""config/foxglove_layout.json (import it in Foxglove: Layouts -> Import): every panel it places
exists, and every topic it shows is one of the package's (docs/architecture.md's topic table, or
a node's own topic), so the layout does not silently show nothing after a rename."""
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NODE_TOPICS = {"/value_steering/choice", "/value_steering/scores"}  # value_steering's ~/choice, ~/scores


def documented_topics() -> list[re.Pattern]:
    table = (ROOT / "docs" / "architecture.md").read_text()
    names = re.findall(r"^\| (/[^|]+?) \|", table, re.M)
    topics = [t.strip() for name in names for t in name.split(",")]
    return [re.compile(re.escape(t).replace(re.escape("<cam>"), "[a-z0-9_]+") + "$") for t in topics]


def layout_topics(layout: dict) -> set[str]:
    found = set()
    for panel in layout["configById"].values():
        found |= {v for k, v in panel.get("imageMode", {}).items() if k == "imageTopic"}
        found |= set(panel.get("topics", {}))
        found |= {p["value"].split(".")[0] for p in panel.get("paths", [])}
        if "topicPath" in panel:
            found.add(panel["topicPath"])
    return found


def panel_ids(node) -> set[str]:
    return {node} if isinstance(node, str) else panel_ids(node["first"]) | panel_ids(node["second"])


def test_the_foxglove_layout_shows_the_packages_topics():
    layout = json.loads((ROOT / "config" / "foxglove_layout.json").read_text())
    assert panel_ids(layout["layout"]) == set(layout["configById"])
    known = documented_topics()
    assert len(known) >= 10
    topics = layout_topics(layout)
    unknown = [t for t in topics if t not in NODE_TOPICS and not any(p.match(t) for p in known)]
    assert not unknown and len(topics) >= 8, (unknown, topics)
