"""bench/residual_efficiency.py end to end on a tiny budget: both learners run with the flags
given, and the last stdout line is the JSON the residual issue asks for."""
import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "residual_efficiency.py"


def test_bench_prints_one_json_line_with_both_learners_and_the_knobs_it_ran_with(tmp_path):
    r = subprocess.run([sys.executable, str(BENCH), "--base", "expert:reach:medium", "--task", "reach",
                        "--env-steps", "300", "--eval-every", "300", "--eval-episodes", "2",
                        "--warmup-steps", "100", "--critic-warmup-updates", "10", "--utd-ratio", "3",
                        "--residual-scale", "0.05", "0.01", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    for key in ("base_success", "final_success", "env_steps_to_90", "env_steps_to_95", "wall_s_to_95",
                "baseline_final_success"):
        assert key in result
    assert 0.0 <= result["final_success"] <= 1.0 and 0.0 <= result["baseline_final_success"] <= 1.0
    assert result["residual"]["utd_ratio"] == 3
    assert result["residual"]["residual_scale"] == [0.05] * 7 + [0.01]
    for learner in ("residual", "baseline"):
        assert (tmp_path / learner / "curves.csv").exists()
        assert (tmp_path / learner / "checkpoint" / "config.json").exists()
