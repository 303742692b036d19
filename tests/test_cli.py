"""The command line: each command's success and its errors, with exit codes a shell can rely on."""
import json
import os
import subprocess
import sys

import pytest

from edgeprune.cli import main
from helpers.processes import python_path
from test_end_to_end import model_folder  # noqa: F401  (fixture)


def test_prune_eval_draw(model_folder, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "runs"
    code = main(["prune", model_folder, "ioi", "--sparsity", "0.5", "0.9", "--one-run", "--out", str(out),
                 "--steps", "3", "--batch-size", "8", "--n", "8", "--warmup-steps", "1", "--ramp-steps", "2",
                 "--eval-every", "0", "--no-progress"])
    assert code == 0
    assert "target 0.9:" in capsys.readouterr().out
    folder = out / "sparsity-0.9"
    data = json.load(open(folder / "circuit.json"))
    assert data["num_edges"] == round(0.1 * data["total_edges"])
    assert json.load(open(folder / "circuit.json"))["source"] == model_folder
    assert main(["eval", str(folder), "ioi", "--n", "8"]) == 0  # the model the circuit records
    assert '"kl"' in capsys.readouterr().out
    assert main(["draw", str(folder), "-o", str(tmp_path / "c.dot")]) == 0
    assert (tmp_path / "c.dot").read_text().startswith("digraph circuit")


@pytest.mark.parametrize("argv,message", [
    (["eval", "/no/such/folder", "ioi"], "no circuit.json"),
    (["prune", "m", "no-such-task", "--sparsity", "0.9", "--out", "x"], "neither a task"),
    (["draw", "/no/such/folder"], "no circuit.json"),
])
def test_errors_exit_1_with_a_message(argv, message, capsys):
    assert main(argv) == 1
    assert message in capsys.readouterr().err


def test_bad_sparsity_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["prune", "m", "ioi", "--sparsity", "2.5", "--out", "x"])
    assert exit_info.value.code == 2
    assert "2.5 is outside [0, 1.4]" in capsys.readouterr().err


def _commands():
    from edgeprune.cli import build_parser
    return build_parser()._subparsers._group_actions[0].choices


@pytest.mark.parametrize("command", sorted(_commands()))
def test_every_option_says_what_it_does_and_its_default(command):
    """Each option of each command has help text, naming its default unless it is required or a
    switch; every --flag a help text mentions is an option of that command."""
    import argparse
    import re
    parser = _commands()[command]
    required_groups = [g for g in parser._mutually_exclusive_groups if g.required]
    flags = {o for a in parser._actions for o in a.option_strings}
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = "/".join(action.option_strings) or action.dest
        assert action.help and action.help != argparse.SUPPRESS, f"{command} {name}: no help"
        switch = action.nargs == 0 and not isinstance(action, argparse.BooleanOptionalAction)
        required = action.required or any(action in g._group_actions for g in required_groups)
        if action.option_strings and not switch and not required:
            assert "default" in action.help, f"{command} {name}: its default is not shown"
        for mentioned in re.findall(r"(?<![\w-])--[a-z][a-z_-]*[a-z]", action.help):
            if "_" not in mentioned:  # the reference's own flags (--disable_node_loss) are named as such
                assert mentioned in flags, f"{command} {name}: its help mentions {mentioned}, not an option"



def test_help_lists_commands():
    result = subprocess.run([sys.executable, "-m", "edgeprune", "--help"], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": python_path()})
    assert result.returncode == 0
    for command in ("prune", "eval", "draw", "demo", "plan", "bench"):
        assert command in result.stdout


def test_training_options_come_from_trainconfig():
    """One option per command-line TrainConfig field, with the field's default; values reach the config."""
    from dataclasses import fields

    from edgeprune.cli import _config_overrides, build_parser
    from edgeprune.config import TrainConfig
    args = build_parser().parse_args(["prune", "m", "ioi", "--sparsity", "0.9", "--out", "x"])
    from edgeprune.config import CURVE
    cli_fields = [f for f in fields(TrainConfig) if f.metadata.get("cli", True)]
    assert len(cli_fields) >= 15
    for f in cli_fields:  # the options whose --budgets default differs are left to the run
        assert getattr(args, f.name) == (None if f.name in CURVE else f.default), f.name
    config = TrainConfig.with_overrides(None, {"edge_sparsity": 0.9, **_config_overrides(args)})
    assert all(getattr(config, name) == TrainConfig.__dataclass_fields__[name].default for name in CURVE)
    args = build_parser().parse_args(["prune", "m", "ioi", "--sparsity", "0.9", "--out", "x", "--lr", "0.3",
                                      "--no-recompute-readers", "--node-sparsity", "0.5", "--ablation", "mean"])
    config = TrainConfig.with_overrides(None, {"edge_sparsity": 0.9, **_config_overrides(args)})
    assert (config.lr, config.recompute_readers, config.node_sparsity, config.ablation) == (0.3, False, 0.5, "mean")


def test_budgets_seeds_curve_and_mib_export(model_folder, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "sweep"
    code = main(["prune", model_folder, "ioi", "--budgets", "0.1", "0.5", "1", "--seeds", "2", "--out", str(out),
                 "--steps", "2", "--stage-steps", "2", "--batch-size", "8", "--n", "8", "--warmup-steps", "1",
                 "--ramp-steps", "1", "--eval-every", "0", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "budget 0.1:" in printed and "IoU of edge sets over 2 circuits" in printed
    table = printed[printed.index("IoU of edge sets"):].splitlines()[2:]
    assert [float(line.split()[0]) for line in table] == [0.1, 0.5, 1.0]  # the budgets asked for, not MIB's ten
    import edgeprune
    by_folder = edgeprune.compare(str(out / "seed-0"), str(out / "seed-1"), budgets=[0.1, 0.5, 1.0])
    assert by_folder.table().splitlines()[2:] == table  # README's form: folders, not loaded circuits
    for seed in (0, 1):
        assert sorted(p.name for p in (out / f"seed-{seed}").glob("budget-*")) == ["budget-0.1", "budget-0.5",
                                                                                   "budget-1"]
    run = str(out / "seed-0")
    code = main(["curve", run, "--n", "6", "-o", str(tmp_path / "curve.png")])
    printed = capsys.readouterr()
    assert "CPR" in printed.out and "CMD" in printed.out
    try:
        import matplotlib  # noqa: F401
        plots = True
    except ImportError:
        plots = False
    assert code == 0
    if plots:
        assert (tmp_path / "curve.svg").exists()
    else:  # the plot is an extra; the table is printed without it, and it says so
        assert "no plot: matplotlib is not installed" in printed.err and '".[plot]"' in printed.err
    mib = tmp_path / "mib" / "ioi_gpt2"
    assert main(["export", run, "--mib", str(mib)]) == 0
    files = sorted(p.name for p in mib.iterdir())
    assert len(files) == 9 and "0.1.json" in files and "50.json" in files
    assert json.load(open(mib / "0.1.json"))["cfg"]["d_model"] == 32  # the model's width, recorded in the circuit
    single = str(out / "seed-0" / "budget-0.1")
    capsys.readouterr()
    assert main(["export", single, "--mib", str(mib), "--binary"]) == 1  # no silent mix of two exports
    assert "already holds 9 file(s)" in _error_line(capsys)
    assert main(["export", single, "--mib", str(mib), "--binary", "--format", "pt", "--overwrite"]) == 0
    assert sorted(p.name for p in mib.iterdir()) == sorted(f.replace(".json", ".pt") for f in files)
    assert main(["export", single, "--mib", str(tmp_path / "scores"), "--format", "pt"]) == 0
    from edgeprune import Circuit
    back = Circuit.from_mib(str(tmp_path / "scores" / "importances.pt"), Circuit.load(single).graph)
    assert back.edges == Circuit.load(single).edges
    # --connected: the exported scores cut, at every budget, as the connected ranking does
    assert main(["export", single, "--mib", str(tmp_path / "connected"), "--connected"]) == 0
    back = Circuit.from_mib(str(tmp_path / "connected" / "importances.json"), Circuit.load(single).graph)
    connected = Circuit.load(single).connected()
    for fraction in (0.05, 0.2, 0.5):
        assert back.at_budget(fraction).edges == connected.at_budget(fraction).edges
    capsys.readouterr()
    assert main(["curve", single, "--n", "6", "--connected"]) == 0 and "CMD" in capsys.readouterr().out


def _error_line(capsys) -> str:
    """The one line an expected failure prints (progress bars aside), with no traceback."""
    err = capsys.readouterr().err
    lines = [line for line in err.split("\n") if line.startswith("edgeprune ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_prune_again_over_its_runs(model_folder, tmp_path, capsys):  # noqa: F811
    """A finished run's circuit is kept, another run's folder refused in one line; --overwrite reruns."""
    argv = ["prune", model_folder, "ioi", "--sparsity", "0.5", "--out", str(tmp_path), "--steps", "2",
            "--batch-size", "8", "--n", "8", "--warmup-steps", "1", "--ramp-steps", "1", "--eval-every", "0",
            "--no-progress"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 0
    assert "(finished earlier; kept)" in capsys.readouterr().out
    assert main(argv[:-1] + ["--lr", "0.1", "--no-progress"]) == 1
    assert "belongs to another run: settings.lr: 0.8 in the checkpoint, 0.1 now" in _error_line(capsys)
    assert main(argv + ["--overwrite"]) == 0


def test_eval_without_a_recorded_source_and_debug(tmp_path, capsys):
    from edgeprune.circuit import Circuit
    from edgeprune.graph import Graph
    Circuit(Graph(2, 4, 4, 2), [], [], model="GPT2LMHeadModel").save(tmp_path)
    assert main(["eval", str(tmp_path), "ioi"]) == 1
    err = _error_line(capsys)
    assert err.startswith("edgeprune eval: error: the circuit in") and "(GPT2LMHeadModel)" in err
    assert "pass --model with its hub id or folder" in err
    from edgeprune.errors import UserError
    with pytest.raises(UserError, match="does not say where its model"):
        main(["eval", str(tmp_path), "ioi", "--debug"])


def test_unloadable_models_are_one_line(model_folder, tmp_path, capsys):  # noqa: F811
    """A missing model folder and a corrupted weights file: one line naming the model, no traceback."""
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(model_folder, broken)
    (broken / "model.safetensors").write_bytes(b"\x00" * 16)
    missing = str(tmp_path / "missing")
    for model, what in ((missing, f"the model folder {missing!r} does not exist"),
                        (str(broken), f"cannot load the model {str(broken)!r} (SafetensorError:")):
        assert main(["prune", model, "ioi", "--sparsity", "0.5", "--out", str(tmp_path / "out"), "--no-progress",
                     "--device", "cpu"]) == 1
        assert what in _error_line(capsys)


def test_attribute_then_warm_started_prune(model_folder, tmp_path, capsys):  # noqa: F811
    from edgeprune.attribution import METHODS
    from edgeprune.cli import build_parser
    command = build_parser()._subparsers._group_actions[0].choices["attribute"]
    help_text = next(a.help for a in command._actions if a.dest == "method")
    assert all(method in help_text for method in METHODS)
    scored = tmp_path / "eap"
    assert main(["attribute", model_folder, "ioi", "--method", "eap-ig-inputs", "--steps", "2", "--n", "6",
                 "--out", str(scored)]) == 0
    assert "eap-ig-inputs:" in capsys.readouterr().out
    assert json.load(open(scored / "circuit.json"))["config"]["method"] == "eap-ig-inputs"
    out = tmp_path / "warm"
    assert main(["prune", model_folder, "ioi", "--sparsity", "0.9", "--init", str(scored), "--out", str(out),
                 "--steps", "2", "--batch-size", "4", "--n", "4", "--warmup-steps", "1", "--ramp-steps", "1",
                 "--eval-every", "0", "--no-progress"]) == 0
    assert json.load(open(out / "sparsity-0.9" / "circuit.json"))["config"]["init"]["source"] == "eap-ig-inputs"
    assert main(["attribute", model_folder, "ioi", "--method", "eap-ig", "--out", str(tmp_path / "x")]) == 1
    assert "unknown attribution method 'eap-ig'" in capsys.readouterr().err


def test_a_path_writes_nested_budget_circuits_with_its_ranking(model_folder, tmp_path, capsys):  # noqa: F811
    import edgeprune
    out = tmp_path / "path"
    code = main(["prune", model_folder, "ioi", "--budgets", "0.05", "0.2", "0.5", "--path", "--out", str(out),
                 "--steps", "6", "--batch-size", "8", "--n", "8", "--warmup-steps", "1", "--eval-every", "0",
                 "--no-progress"])
    assert code == 0, capsys.readouterr()
    circuits = [edgeprune.Circuit.load(str(out / f"budget-{f}")) for f in ("0.05", "0.2", "0.5")]
    assert all(c.ranking is not None and c.config["path"] for c in circuits)
    assert all(torch_equal(c.ranking, circuits[0].ranking) for c in circuits)   # one run, one ranking
    for small, large in zip(circuits, circuits[1:]):
        assert set(small.edges) <= set(large.edges)                            # nested
    assert circuits[0].config["edge_sparsity"] == 1 - 0.05 / 2                  # to half the smallest budget


def torch_equal(a, b) -> bool:
    import torch
    return torch.equal(a, b)
