"""A circuit records where its model is (absolute folder or hub id), its width and a fingerprint of
its weights; `eval` finds the model from anywhere and refuses other weights."""
import json
import os
import shutil

import pytest
import torch

import edgeprune
from edgeprune.cli import main
from edgeprune.provenance import weights_fingerprint
from helpers.models import tiny
from test_end_to_end import model_folder  # noqa: F401  (fixture)

QUICK = dict(steps=2, batch_size=4, n=4, warmup_steps=1, ramp_steps=1, eval_every=0, progress=False)


def test_the_fingerprint_is_the_weights_not_their_dtype():
    model = tiny("gpt2")
    same = weights_fingerprint(model)
    assert same == weights_fingerprint(tiny("gpt2")) and len(same) == 16
    assert weights_fingerprint(tiny("gpt2").to(torch.bfloat16)) == same  # the same weights in bfloat16
    tuned = tiny("gpt2")
    with torch.no_grad():  # a fine-tune's small change
        tuned.transformer.h[0].mlp.c_fc.weight.mul_(1.05)
    assert weights_fingerprint(tuned) != same


def test_a_circuit_records_its_model_and_eval_finds_it_from_anywhere(model_folder, tmp_path, capsys,  # noqa: F811
                                                                     monkeypatch):
    parent, name = os.path.split(model_folder)
    monkeypatch.chdir(parent)
    circuit = edgeprune.train(name, "ioi", edge_sparsity=0.5, **QUICK)  # a relative folder, as typed
    assert circuit.source == model_folder and circuit.d_model == 32
    assert circuit.weights == weights_fingerprint(edgeprune.prunable(
        edgeprune.loading.load_model(model_folder)[0]).model)
    circuit.save(str(tmp_path / "c"))
    saved = json.load(open(tmp_path / "c" / "circuit.json"))
    assert (saved["source"], saved["weights"], saved["d_model"]) == (model_folder, circuit.weights, 32)
    monkeypatch.chdir(tmp_path)  # another folder: the recorded absolute path still finds the model
    assert main(["eval", "c", "ioi", "--n", "4", "--no-progress"]) == 0
    assert '"kl"' in capsys.readouterr().out


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.split("\n") if line.startswith("edgeprune ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_eval_refuses_other_weights_and_reports_a_missing_model(model_folder, tmp_path, capsys):  # noqa: F811
    circuit = edgeprune.train(model_folder, "ioi", edge_sparsity=0.5, **QUICK)
    circuit.save(str(tmp_path / "c"))
    other = tmp_path / "other"  # the same shape, other weights
    shutil.copytree(model_folder, other)
    model = edgeprune.loading.load_model(str(other))[0]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    model.save_pretrained(other)
    assert main(["eval", str(tmp_path / "c"), "ioi", "--model", str(other), "--n", "4", "--no-progress"]) == 1
    line = _error_line(capsys)
    assert "the circuit was found on other weights than those of" in line and "--other-weights" in line
    assert main(["eval", str(tmp_path / "c"), "ioi", "--model", str(other), "--n", "4", "--no-progress",
                 "--other-weights"]) == 0
    capsys.readouterr()
    moved = tmp_path / "moved"
    shutil.copytree(model_folder, moved)
    circuit.source = str(moved)
    circuit.save(str(tmp_path / "c"))
    shutil.rmtree(moved)
    assert main(["eval", str(tmp_path / "c"), "ioi", "--n", "4"]) == 1
    assert f"the model folder '{moved}' does not exist" in _error_line(capsys)  # not a bad hub id


def test_an_older_circuit_without_a_fingerprint_still_evaluates(model_folder, tmp_path):  # noqa: F811
    circuit = edgeprune.train(model_folder, "ioi", edge_sparsity=0.5, **QUICK)
    circuit.weights, circuit.d_model = "", None
    circuit.save(str(tmp_path / "c"))
    data = json.load(open(tmp_path / "c" / "circuit.json"))
    for key in ("weights", "d_model", "target_edge_sparsity"):  # as earlier versions wrote it
        data.pop(key)
    json.dump(data, open(tmp_path / "c" / "circuit.json", "w"))
    old = edgeprune.Circuit.load(str(tmp_path / "c"))
    assert old.weights == "" and old.d_model is None
    assert edgeprune.evaluate(model_folder, old, "ioi", n=4, progress=False)["n"] == 4
    with pytest.raises(edgeprune.errors.UserError, match="found on other weights"):
        old.weights = "0" * 16
        edgeprune.evaluate(model_folder, old, "ioi", n=4, progress=False)
