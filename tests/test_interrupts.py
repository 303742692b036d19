"""Ctrl-C (SIGINT) and SIGTERM during `edgeprune prune`: the run checkpoints the step it finished and
stops with one line saying how to resume; a rerun of the same command keeps the circuits already
written and resumes the run that was stopped, ending as if it had never been.

Each run is its own process with the C++ backend and one thread, so results are bitwise repeatable
(as in tests/test_kill_resume.py).
"""
import json
import os
import signal
import subprocess
import sys

import torch

from helpers.processes import python_path
from test_end_to_end import model_folder  # noqa: F401  (fixture)

SCRIPT = os.path.join(os.path.dirname(__file__), "helpers", "interrupt_run.py")
STEPS = 6


def _prune(model, out, *targets, signal_name="INT", at=0):
    env = {**os.environ, "EDGEPRUNE_BACKEND": "cpp", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": python_path()}
    argv = [sys.executable, SCRIPT, signal_name, str(at), "prune", model, "ioi", "--sparsity", *targets,
            "--out", str(out), "--steps", str(STEPS), "--batch-size", "4", "--n", "8", "--warmup-steps", "1",
            "--ramp-steps", "4", "--eval-every", "0", "--threads", "1", "--device", "cpu", "--no-progress"]
    return subprocess.run(argv, env=env, capture_output=True, text=True)


def _step(folder) -> int:
    return torch.load(os.path.join(folder, "checkpoint.pt"), weights_only=True)["step"]


def _scores(folder):
    from safetensors.torch import load_file
    return load_file(os.path.join(folder, "log_alphas.safetensors"))


def test_signals_checkpoint_and_a_rerun_keeps_and_resumes(model_folder, tmp_path):  # noqa: F811
    whole = _prune(model_folder, tmp_path / "whole", "0.9")
    assert whole.returncode == 0, whole.stderr[-3000:]

    out = tmp_path / "stopped"
    stopped = _prune(model_folder, out, "0.5", "0.9", at=STEPS + 3)  # Ctrl-C in the second run's third step
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    lines = [line for line in stopped.stderr.splitlines() if line.startswith("edgeprune ")]
    assert "Traceback" not in stopped.stderr and len(lines) == 1, stopped.stderr[-3000:]
    assert lines[0] == (f"edgeprune prune: interrupted by SIGINT at step 3 of {STEPS}; checkpointed in "
                        f"{out / 'run-0.9'}: run the same command again to resume")
    assert (out / "sparsity-0.5" / "circuit.json").exists()  # written as soon as its run ended
    assert not (out / "sparsity-0.9").exists() and _step(out / "run-0.9") == 3

    first = _scores(out / "sparsity-0.5")
    os.remove(out / "sparsity-0.5" / "edges.json")  # a circuit.json without the rest: rewritten, not trusted
    done = _prune(model_folder, out, "0.5", "0.9")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "target 0.5:" in done.stdout and "target 0.9:" in done.stdout
    assert all(torch.equal(first[k], v) for k, v in _scores(out / "sparsity-0.5").items())
    resumed, reference = _scores(out / "sparsity-0.9"), _scores(tmp_path / "whole" / "sparsity-0.9")
    assert resumed.keys() == reference.keys() and all(torch.equal(resumed[k], reference[k]) for k in reference)
    steps = [json.loads(line)["step"] for line in open(out / "run-0.9" / "metrics.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == STEPS  # each logged step once


def test_sigterm_stops_the_command_in_one_line(model_folder, tmp_path, capsys, monkeypatch):  # noqa: F811
    from edgeprune.cli import main
    from helpers.interrupt_run import signal_at
    from edgeprune.training import Trainer
    monkeypatch.setattr(Trainer, "step", Trainer.step)  # signal_at replaces it; put back afterwards
    signal_at(signal.SIGTERM, 2)
    code = main(["prune", model_folder, "ioi", "--sparsity", "0.5", "--out", str(tmp_path), "--steps", str(STEPS),
                 "--batch-size", "4", "--n", "4", "--warmup-steps", "1", "--ramp-steps", "4", "--eval-every", "0",
                 "--no-progress", "--device", "cpu"])
    assert code == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert "Traceback" not in err and [line for line in err.splitlines() if line.startswith("edgeprune ")] == [
        f"edgeprune prune: interrupted by SIGTERM at step 2 of {STEPS}; checkpointed in {tmp_path / 'run-0.5'}: run "
        "the same command again to resume"]
    assert _step(tmp_path / "run-0.5") == 2 and not (tmp_path / "sparsity-0.5").exists()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the process's own handlers are back


def test_ctrl_c_before_training_is_one_line(tmp_path, capsys, monkeypatch):
    """Ctrl-C while the model loads (no run to checkpoint yet): one line, exit 130, no traceback."""
    from edgeprune.cli import main

    def load_model(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr("edgeprune.training.load_model", load_model)
    assert main(["prune", "m", "ioi", "--sparsity", "0.5", "--out", str(tmp_path), "--device", "cpu"]) == 130
    assert capsys.readouterr().err.strip() == "edgeprune prune: interrupted"
