"""Scripted experts: >= 95% success at expert quality on a fixed seed list, degradable quality."""
import numpy as np
import pytest

from robot_rl.errors import ConfigError
from robot_rl.sim.experts import ScriptedExpert, quality_value
from robot_rl.sim.rollout import evaluate

EXPERT_SEEDS = list(range(1000, 1040))


@pytest.mark.parametrize("task", ["reach", "push", "lift"])
def test_expert_quality_succeeds(task):
    result = evaluate(task, ScriptedExpert(task, "expert"), EXPERT_SEEDS, progress=False)
    assert result["success_rate"] >= 0.95, result


def test_poor_quality_is_worse_on_lift():
    seeds = EXPERT_SEEDS[:20]
    expert = evaluate("lift", ScriptedExpert("lift", "expert"), seeds, progress=False)
    poor = evaluate("lift", ScriptedExpert("lift", "poor"), seeds, progress=False)
    assert poor["success_rate"] <= expert["success_rate"] - 0.5
    assert np.mean(poor["lengths"]) > np.mean(expert["lengths"])


def test_quality_values():
    assert quality_value("expert") == 1.0 and quality_value(0.3) == 0.3
    with pytest.raises(ConfigError):
        quality_value("great")
    with pytest.raises(ConfigError):
        quality_value(1.5)
