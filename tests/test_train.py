"""The trainer: the paper's optimisation semantics, circuits, checkpoints and errors."""
import math

import pytest
import torch

import edgeprune
from edgeprune.step import lr_factor
from edgeprune.training import NonFiniteLoss, TrainConfig, Trainer
from helpers.data import random_pairs
from helpers.models import tiny


def _trainer(steps=24, checkpoint_dir=None, seed=0, model=None, **kw):
    pm = edgeprune.prunable(model or tiny("gpt2"))
    pm.gates.reset_parameters(torch.Generator().manual_seed(seed))
    config = TrainConfig(edge_sparsity=0.5, steps=steps, batch_size=4, warmup_steps=4, ramp_steps=12,
                         eval_every=0, checkpoint_every=8, seed=seed, **kw)
    return Trainer(pm, random_pairs(), config, checkpoint_dir=checkpoint_dir)


def test_optimiser_semantics():
    t = _trainer(node_sparsity=0.3)
    groups = t.train_step.optimizer.param_groups
    assert [g["weight_decay"] for g in groups] == [0.01] * 4          # every group, multipliers included
    assert [g.get("maximize", False) for g in groups] == [False, False, True, True]
    assert lr_factor(t.config, 0) == 0 and lr_factor(t.config, 2) == 0.5 and lr_factor(t.config, 4) == 1
    assert lr_factor(t.config, 14) == pytest.approx(0.5) and lr_factor(t.config, 24) == 0
    targets = t.pressure.sparsity_targets
    assert targets(6) == pytest.approx((0.25, 0.15)) and targets(100) == pytest.approx((0.5, 0.3))
    assert len(_trainer().train_step.optimizer.param_groups) == 3                # no node term: node multipliers untouched


def test_multipliers_ascend_and_gates_start_saturated():
    t = _trainer(steps=30)
    g = t.pm.gates
    assert g.edge_log_alpha.mean().item() == pytest.approx(10, abs=0.01)
    assert g.edge_log_alpha.std().item() == pytest.approx(0.01, rel=0.2)
    for _ in range(12):
        logs = t.step()
    # sampled sparsity ~0 < target: gradient ascent drives lambda1 negative, lambda2 up
    assert logs["lambda_edge1"] < 0 < logs["lambda_edge2"]
    assert math.isfinite(logs["kl"])


def test_same_seed_same_circuit_and_exact_resume(tmp_path):
    full = _trainer(steps=24, model=tiny("gpt2"))
    full.run(progress=False)
    part = _trainer(steps=24, checkpoint_dir=str(tmp_path), model=tiny("gpt2"))
    for _ in range(16):          # "killed" after the step-16 checkpoint
        part.step()
        if part.step_index % 8 == 0:
            part.save_checkpoint()
    resumed = _trainer(steps=24, checkpoint_dir=str(tmp_path), model=tiny("gpt2"))
    assert resumed.maybe_resume() and resumed.step_index == 16
    resumed.run(progress=False)
    assert torch.equal(full.pm.gates.edge_log_alpha, resumed.pm.gates.edge_log_alpha)
    assert torch.equal(full.pm.gates.node_log_alpha, resumed.pm.gates.node_log_alpha)
    assert full.circuit().edges == resumed.circuit().edges


def test_circuit_save_load_and_cuts(tmp_path):
    t = _trainer(steps=40)
    circuit = t.run(progress=False)
    assert circuit.task == "task" and circuit.seed == 0
    circuit.save(str(tmp_path))
    loaded = edgeprune.Circuit.load(str(tmp_path))
    assert loaded.edges == circuit.edges and loaded.nodes == circuit.nodes and loaded.graph == circuit.graph
    assert torch.equal(loaded.edge_scores, circuit.edge_scores)
    assert loaded.edge_sparsity == circuit.edge_sparsity
    n = circuit.graph.num_edges
    for k in (0, 1, 17, n):
        assert len(circuit.at_edges(k).edges) == k
    assert len(circuit.at_sparsity(0.9).edges) == round(0.1 * n)
    # the cut follows the learned ranking: every kept edge scores at least as high as every dropped one
    kept = circuit.at_edges(17)
    index = circuit.graph.edge_index
    kept_scores = circuit.edge_scores[[index[e] for e in kept.edges]]
    assert kept_scores.min() >= circuit.edge_scores.sort(descending=True).values[16]
    with pytest.raises(ValueError, match="outside"):
        circuit.at_edges(n + 1)


def test_final_circuit_threshold_matches_soft_sparsity():
    t = _trainer(steps=40)
    circuit = t.run(progress=False)
    soft, _ = t.pm.gates.deterministic()
    expected = 1 - soft.mean().item()
    raw = 1 - (soft > circuit.config["thresholds"][0]).float().mean().item()
    assert raw == pytest.approx(expected, abs=1.5 / circuit.graph.num_edges + 1e-3)


@pytest.mark.parametrize("target", [-0.1, 2.0, float("nan")])
def test_target_out_of_range(target):
    with pytest.raises(ValueError, match=r"outside \[0, 1\.4\]"):
        _trainer(edge_sparsity=target) if False else TrainConfig(edge_sparsity=target).validate()


def test_empty_dataset_and_unsupported_model():
    pm = edgeprune.prunable(tiny("gpt2"))
    empty = random_pairs(n=0)
    with pytest.raises(ValueError, match="dataset is empty"):
        Trainer(pm, empty, TrainConfig(edge_sparsity=0.5))
    with pytest.raises(ValueError, match="cannot prune Linear.*Supported: GPT2LMHeadModel"):
        edgeprune.prunable(torch.nn.Linear(2, 2))


def test_nan_loss_names_step_and_checkpoint(tmp_path):
    t = _trainer(steps=30, checkpoint_dir=str(tmp_path))
    for _ in range(8):
        t.step()
    t.save_checkpoint()
    with torch.no_grad():
        t.pm.model.lm_head.weight.fill_(float("nan"))
    t.data.targets = t.data.targets.nan_to_num(0.0) - 1.0   # keep the target finite; the circuit's logits are NaN
    before = [p.detach().clone() for p in (*t.pm.gates.parameters(), *t.pressure.parameters())]
    t.step()
    t.step()                         # nothing waits for the device: the error comes at the next check
    optimiser_state = [v.clone() for s in t.train_step.optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    with pytest.raises(NonFiniteLoss, match=r"loss became nan at step 8; its update was skipped, as is every "
                                            r"non-finite step's; the last good checkpoint is .*checkpoint\.pt"):
        t.check()
    # the non-finite steps changed nothing: the gates and multipliers are the step-8 ones
    for old, p in zip(before, (*t.pm.gates.parameters(), *t.pressure.parameters())):
        assert torch.equal(old, p.detach())
    t.step()
    assert all(torch.equal(a, b) for a, b in zip(
        optimiser_state, [v for s in t.train_step.optimizer.state.values() for v in s.values() if torch.is_tensor(v)]))
