"""A checkpoint folder is continued only by the run that made it (edgeprune.identity)."""
import json

import pytest
import torch

import edgeprune
from edgeprune.checkpoints import RunFinished
from edgeprune.identity import weights_fingerprint
from edgeprune.training import TrainConfig, Trainer
from helpers.data import random_pairs
from helpers.models import tiny


def _trainer(folder, model=None, data=None, **kw):
    pm = edgeprune.prunable(model or tiny("gpt2"))
    pm.gates.reset_parameters(torch.Generator().manual_seed(0))
    config = TrainConfig(**({"edge_sparsity": 0.5, "steps": 8, "batch_size": 4, "warmup_steps": 2, "ramp_steps": 4,
                             "eval_every": 0, "log_every": 1, "checkpoint_every": 4} | kw))
    return Trainer(pm, data or random_pairs(), config, checkpoint_dir=str(folder))


def _perturbed():
    model = tiny("gpt2")
    with torch.no_grad():
        model.transformer.h[1].mlp.c_fc.weight.mul_(1.5)
    return model


@pytest.mark.parametrize("change,named,count", [
    (dict(data=random_pairs(seed=1)), "data: ", 1),                            # other examples, same graph
    (dict(model=_perturbed()), "the model's weights: ", 1),                     # other weights, same graph
    (dict(steps=16), "settings.steps: 8 in the checkpoint, 16 now", 1),         # the lr decay depends on it
    (dict(lr=0.1), "settings.lr: 0.8 in the checkpoint, 0.1 now", 1),
    (dict(model=tiny("gpt2", layers=3)), "model.config.n_layer: 2 in the checkpoint, 3 now", 2),  # and weights
    (dict(backend="torch"), "backend: 'cpp' in the checkpoint, 'torch' now", 1),
])
def test_another_runs_checkpoint_is_refused_naming_the_difference(tmp_path, change, named, count):
    _trainer(tmp_path, backend="cpp").run(progress=False)
    other = _trainer(tmp_path, **({"backend": "cpp"} | change))
    with pytest.raises(edgeprune.errors.UserError) as error:
        other.maybe_resume()
    message = str(error.value)
    assert f"{tmp_path} belongs to another run: " in message and named in message
    assert "use another checkpoint folder, or pass overwrite=True (--overwrite)" in message
    assert message.count(" in the checkpoint, ") == count  # only what differs is named


def test_a_finished_run_is_reported_and_overwrite_starts_afresh(tmp_path):
    fresh = _trainer(tmp_path / "fresh").run(progress=False)
    _trainer(tmp_path / "run").run(progress=False)
    with pytest.raises(RunFinished, match=r"the run in .*run has finished \(8 of 8 steps\)"):
        _trainer(tmp_path / "run").maybe_resume()
    again = _trainer(tmp_path / "run")
    assert not again.maybe_resume(overwrite=True) and again.step_index == 0
    circuit = again.run(progress=False)
    assert torch.equal(circuit.edge_scores, fresh.edge_scores)
    steps = [json.loads(line)["step"] for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert steps == list(range(1, 9))  # the first run's rows were removed with its checkpoint


def test_unidentified_or_damaged_checkpoints_are_refused(tmp_path):
    t = _trainer(tmp_path)
    for _ in range(4):
        t.step()
    state = t.state_dict()
    del state["identity"]  # as an older edgeprune wrote it
    torch.save(state, tmp_path / "checkpoint.pt")
    with pytest.raises(edgeprune.errors.UserError, match="does not say which run it belongs to"):
        _trainer(tmp_path).maybe_resume()
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(edgeprune.errors.UserError, match=r"cannot read the checkpoint .*checkpoint\.pt"):
        _trainer(tmp_path).maybe_resume()


def test_weights_fingerprint_samples_every_tensor_and_sees_shapes():
    model = tiny("gpt2")
    base = weights_fingerprint(model)
    assert weights_fingerprint(tiny("gpt2")) == base                     # same weights, same fingerprint
    with torch.no_grad():
        model.transformer.wpe.weight[0, 0] += 1                          # the first value is always sampled
    assert weights_fingerprint(model) != base
    other = tiny("gpt2")                                                  # a shape alone differs:
    wpe = other.transformer.wpe                                           # the same values, (32, 64)
    wpe.weight = torch.nn.Parameter(wpe.weight.detach().reshape(32, 64))
    assert weights_fingerprint(other) != base
    with torch.device("meta"):
        assert weights_fingerprint(torch.nn.Linear(2, 2)) is None        # not on this rank: not compared
