"""A training run killed with SIGKILL and run again in the same folder ends as if never stopped.

Each run is its own process with the C++ backend, AVX2 kernels and one thread, so the result is
bitwise repeatable (docs/design.md). Kills fall after a checkpoint and off a checkpoint boundary.
"""
import json
import os
import signal
import subprocess
import sys

import torch

from helpers.kill_run import CHECKPOINT_EVERY, STEPS
from helpers.processes import python_path

SCRIPT = os.path.join(os.path.dirname(__file__), "helpers", "kill_run.py")
KILLS = (6, 13, 19)  # checkpoints at 4, 12 and 16: each rerun resumes there and redoes the steps after


def _run(folder, out, kill_at=None) -> int:
    """The run's exit code; a failure shows the run's own error."""
    env = {**os.environ, "EDGEPRUNE_CPU_ISA": "avx2", "EDGEPRUNE_BACKEND": "cpp", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": python_path()}
    argv = [sys.executable, SCRIPT, str(folder), str(out)] + ([str(kill_at)] if kill_at is not None else [])
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert done.returncode in (0, -signal.SIGKILL), done.stderr[-3000:]
    return done.returncode


def test_killed_runs_resume_to_the_uninterrupted_result(tmp_path):
    assert _run(tmp_path / "whole", tmp_path / "whole.pt") == 0
    whole = torch.load(tmp_path / "whole.pt")
    folder = tmp_path / "killed"
    for kill_at in KILLS:
        assert all(kill_at % CHECKPOINT_EVERY for kill_at in KILLS)
        assert _run(folder, tmp_path / "unused.pt", kill_at) == -signal.SIGKILL
        assert not (tmp_path / "unused.pt").exists()
    assert _run(folder, tmp_path / "resumed.pt") == 0
    resumed = torch.load(tmp_path / "resumed.pt")
    assert resumed["resumed_from"] == 16  # the last checkpoint before the last kill, not step 0
    assert torch.equal(resumed["edge_log_alpha"], whole["edge_log_alpha"])
    assert torch.equal(resumed["node_log_alpha"], whole["node_log_alpha"])
    assert resumed["edges"] == whole["edges"]
    steps = [json.loads(line)["step"] for line in open(folder / "metrics.jsonl")]
    assert steps == list(range(1, STEPS + 1))  # each step once, though steps 5-6, 13 and 17-19 ran twice
    rows = {json.loads(line)["step"]: json.loads(line) for line in open(tmp_path / "whole" / "metrics.jsonl")}
    assert [json.loads(line) for line in open(folder / "metrics.jsonl")] == [rows[s] for s in steps]
