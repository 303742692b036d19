"""A prune command run again over its folder: circuits written as soon as their run ends are kept,
the stopped run resumes, and the result is the uninterrupted command's."""
import signal

import torch

from edgeprune.circuit import Circuit
from edgeprune.cli import main
from edgeprune.training import Trainer
from helpers.interrupt_run import signal_at
from test_end_to_end import model_folder  # noqa: F401  (fixture)

STEPS = 4


def _budgets(model, out):
    """A sweep of stages, one per budget (not a pruning path: that is one run)."""
    return main(["prune", model, "ioi", "--budgets", "0.1", "0.5", "--no-path", "--init", "none", "--objective", "kl",
                 "--out", str(out), "--steps", str(STEPS),
                 "--stage-steps", str(STEPS), "--batch-size", "4", "--n", "4", "--warmup-steps", "1",
                 "--ramp-steps", "2", "--eval-every", "0", "--no-progress", "--device", "cpu"])


def test_a_budget_sweep_stopped_in_its_second_stage_keeps_the_first(model_folder, tmp_path, capsys,  # noqa: F811
                                                                   monkeypatch):
    assert _budgets(model_folder, tmp_path / "whole") == 0
    monkeypatch.setattr(Trainer, "step", Trainer.step)
    signal_at(signal.SIGINT, STEPS + 1)  # the first step of the 0.1 stage (the sweep goes loosest first)
    out = tmp_path / "stopped"
    assert _budgets(model_folder, out) == 128 + signal.SIGINT
    assert (out / "budget-0.5" / "circuit.json").exists() and not (out / "budget-0.1").exists()
    monkeypatch.undo()
    capsys.readouterr()
    assert _budgets(model_folder, out) == 0
    printed = capsys.readouterr().out
    assert "budget 0.5:" in printed and "(finished earlier; kept)" in printed.split("budget 0.5:")[1].splitlines()[0]
    for budget in ("budget-0.1", "budget-0.5"):
        a, b = Circuit.load(str(tmp_path / "whole" / budget)), Circuit.load(str(out / budget))
        assert a.edges == b.edges and torch.equal(a.edge_scores, b.edge_scores), budget


def test_one_run_cut_at_each_target_is_kept_on_a_rerun(model_folder, tmp_path, capsys):  # noqa: F811
    argv = ["prune", model_folder, "ioi", "--sparsity", "0.5", "0.9", "--one-run", "--out", str(tmp_path),
            "--steps", "2", "--batch-size", "4", "--n", "4", "--warmup-steps", "1", "--ramp-steps", "1",
            "--eval-every", "0", "--no-progress"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert main(argv) == 0
    again = capsys.readouterr().out
    assert again.count("(finished earlier; kept)") == 2
    assert again.replace(" (finished earlier; kept)", "") == first
    before = (tmp_path / "sparsity-0.5" / "circuit.json").read_bytes()
    assert main([a for a in argv if a != "--one-run"]) == 1  # one run per target would replace these circuits
    err = capsys.readouterr().err
    assert f"{tmp_path / 'sparsity-0.5'} holds a circuit that this command's run ({tmp_path / 'run-0.5'}) did not " \
           "make" in err and "--overwrite" in err
    assert (tmp_path / "sparsity-0.5" / "circuit.json").read_bytes() == before and not (tmp_path / "run-0.5").exists()
