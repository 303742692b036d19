"""Mistakes caught before the first step: targets out of range, runs too short to reach their target,
output paths that are files; a refused run leaves nothing behind."""
import json
import os
import re
import warnings

import pytest

from edgeprune.cli import main
from edgeprune.config import MAX_TARGET, TrainConfig
from edgeprune.errors import UserError
from test_end_to_end import model_folder  # noqa: F401  (fixture)

RANGE = f"outside [0, {MAX_TARGET:g}]"
RANGE_RE = re.escape(RANGE)
QUICK = ["--steps", "2", "--batch-size", "8", "--n", "8", "--warmup-steps", "1", "--ramp-steps", "1",
         "--eval-every", "0", "--no-progress"]


@pytest.mark.parametrize("value", [1.5, -0.1, float("nan"), 2.0])
def test_targets_outside_the_range_are_refused_when_the_config_is_made(value):
    for name in ("edge_sparsity", "node_sparsity"):
        kwargs = {"edge_sparsity": 0.5, name: value}
        with pytest.raises(UserError, match=rf"{name}={value} is {RANGE_RE}.*as sparse as possible"):
            TrainConfig(**kwargs)
        with pytest.raises(UserError, match=rf"{name}={value} is {RANGE_RE}"):
            TrainConfig.with_overrides(None, kwargs)


def test_targets_in_the_range_are_kept():
    """The paper's targets above 1 (1.01-1.4) mean 'as sparse as possible' and stay legal."""
    for value in (0.0, 0.98, 1.0, 1.01, MAX_TARGET):
        assert TrainConfig(edge_sparsity=value, node_sparsity=value).edge_sparsity == value


@pytest.mark.parametrize("value", ["1.5", "-0.1"])
def test_the_command_line_names_the_same_range(value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["prune", "m", "ioi", "--sparsity", value, "--out", "x"])
    assert exit_info.value.code == 2
    assert f"{float(value)} is {RANGE}" in capsys.readouterr().err


def test_a_run_too_short_for_its_ramp_is_warned_before_its_first_step():
    from edgeprune.config import schedule_warnings
    short = TrainConfig(edge_sparsity=0.95, steps=150)  # the default ramp (2,500) and warm-up (200)
    text = " ".join(schedule_warnings(short))
    assert "never reaches its target 0.95" in text and "ramp_steps=2500" in text and "steps=150" in text
    assert "0.057" in text  # the target at its last step: 0.95 x 150 / 2500
    assert "warmup_steps=200" in text
    assert schedule_warnings(TrainConfig(edge_sparsity=0.95)) == []  # the paper's 3,000 steps, ramp 2,500
    assert schedule_warnings(TrainConfig(edge_sparsity=0.95, steps=10, ramp_steps=10, warmup_steps=2)) == []


def test_train_warns_and_its_circuit_records_the_target_it_missed(model_folder):  # noqa: F811
    import edgeprune
    with pytest.warns(UserWarning, match="never reaches its target 0.9"):
        circuit = edgeprune.train(model_folder, "ioi", edge_sparsity=0.9, steps=2, batch_size=4, n=4, warmup_steps=1,
                                  ramp_steps=20, eval_every=0, progress=False)
    summary = circuit.summary()
    assert summary["target_edge_sparsity"] == 0.9
    assert summary["edge_sparsity"] < 0.5  # far from its target: two steps of a 20-step ramp
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # long enough: no warning
        edgeprune.train(model_folder, "ioi", edge_sparsity=0.9, steps=2, batch_size=4, n=4, warmup_steps=1,
                        ramp_steps=1, eval_every=0, progress=False)


def test_the_command_line_prints_the_warning_and_reached_against_target(model_folder, tmp_path, capsys):  # noqa: F811
    argv = ["prune", model_folder, "ioi", "--sparsity", "0.9", "--out", str(tmp_path / "o")] + QUICK
    argv[argv.index("--ramp-steps") + 1] = "20"
    assert main(argv) == 0
    out, err = capsys.readouterr()
    warning = [line for line in err.splitlines() if "never reaches" in line]
    assert len(warning) == 1 and warning[0].startswith("edgeprune prune: warning: ")
    line = next(line for line in out.splitlines() if line.startswith("target 0.9:"))
    assert "target 0.9" in line and "short of its target" in line
    saved = json.load(open(tmp_path / "o" / "sparsity-0.9" / "circuit.json"))
    assert saved["target_edge_sparsity"] == 0.9 and saved["edge_sparsity"] < 0.9


# ---------------------------------------------------------------------------- output paths

def _file(path, text="x"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


@pytest.mark.parametrize("blocked", ["out", "out/sparsity-0.5", "out/run-0.5"])
def test_prune_refuses_output_paths_that_are_files_before_training(model_folder, tmp_path, capsys,  # noqa: F811
                                                                  blocked):
    _file(str(tmp_path / blocked))
    assert main(["prune", model_folder, "ioi", "--sparsity", "0.5", "--out", str(tmp_path / "out")] + QUICK) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"{tmp_path / blocked} is a file, not a folder" in err
    assert not (tmp_path / "out" / "run-0.5" / "checkpoint.pt").exists()  # refused before the first step


def test_export_and_attribute_refuse_a_file_as_their_folder(model_folder, tmp_path, capsys):  # noqa: F811
    from edgeprune.circuit import Circuit
    from edgeprune.graph import Graph
    Circuit(Graph(2, 4, 4, 2), [], [], model="m").save(str(tmp_path / "c"))
    _file(str(tmp_path / "f"))
    assert main(["export", str(tmp_path / "c"), "--mib", str(tmp_path / "f")]) == 1
    assert f"{tmp_path / 'f'} is a file, not a folder" in capsys.readouterr().err
    assert main(["attribute", model_folder, "ioi", "--method", "eap", "--n", "2", "--out", str(tmp_path / "f")]) == 1
    assert f"{tmp_path / 'f'} is a file, not a folder" in capsys.readouterr().err
    assert main(["attribute", model_folder, "ioi", "--method", "eap", "--n", "2",
                 "--out", str(tmp_path / "f" / "below")]) == 1
    assert f"{tmp_path / 'f'} is a file, not a folder" in capsys.readouterr().err
    assert main(["demo", "--out", str(tmp_path / "f")]) == 1  # before a run, not at its drawings
    assert f"{tmp_path / 'f'} is a file, not a folder" in capsys.readouterr().err


def test_a_checkpoint_dir_that_is_a_file_is_refused_before_training(model_folder, tmp_path):  # noqa: F811
    import edgeprune
    _file(str(tmp_path / "ck"))
    with pytest.raises(UserError, match="is a file, not a folder"):
        edgeprune.train(model_folder, "ioi", edge_sparsity=0.5, steps=2, batch_size=4, n=4, warmup_steps=1,
                        ramp_steps=1, progress=False, checkpoint_dir=str(tmp_path / "ck"))
    with pytest.raises(UserError, match="is a file, not a folder"):
        edgeprune.Circuit(edgeprune.Graph(2, 4, 4, 2), [], []).save(str(tmp_path / "ck"))


def test_a_refused_run_leaves_no_output_folder(tmp_path, capsys):
    missing = str(tmp_path / "no-model")
    assert main(["prune", missing, "ioi", "--sparsity", "0.5", "--out", str(tmp_path / "out")] + QUICK) == 1
    assert not (tmp_path / "out").exists()


def test_a_circuit_states_the_target_it_answers_to():
    """A cut answers to its cut, a budget's circuit to 1 - its budget (a pruning path's run trains
    further than any one budget), a trained circuit to its run's target; scores to none."""
    import torch

    from edgeprune.circuit import Circuit
    from edgeprune.graph import Graph
    g = Graph(2, 4, 4, 2)
    trained = Circuit.from_log_alphas(g, torch.randn(g.num_edges), torch.randn(g.num_writers),
                                      config={"edge_sparsity": 0.9})
    assert trained.target_edge_sparsity == 0.9 and trained.at_sparsity(0.5).target_edge_sparsity == 0.5
    trained.config |= {"budget": 0.25, "edge_sparsity": 0.9995}
    assert trained.target_edge_sparsity == 0.75
    assert Circuit(g, [], [], edge_scores=torch.zeros(g.num_edges), score_kind="score").target_edge_sparsity is None
