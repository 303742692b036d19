"""Training modes beside the paper's: a warm start from attribution scores, optimal ablation (learned
constants) and the objective matched to the logit difference."""
import pytest
import torch

import edgeprune
from edgeprune.errors import UserError
from edgeprune.evaluation import evaluate_gates
from edgeprune.objective import logit_diff_gap
from edgeprune.training import Trainer, prepare, warm_config
from edgeprune.warmstart import LOG_ALPHA_HALF, expected_sparsity, init_log_alpha
from helpers.data import answer_pairs, random_pairs
from helpers.models import tiny

QUICK = dict(steps=4, batch_size=4, warmup_steps=1, ramp_steps=2, eval_every=0, progress=False)


# ---------------------------------------------------------------------- warm start

def test_the_mapping_opens_the_top_edges():
    scores = torch.tensor([0.5, -3.0, 0.0, 2.0, 0.1, -0.2, 0.05, 1.0, 0.3, 0.01])
    log_alpha = init_log_alpha(scores, sparsity=0.7, temperature=0.2)
    by_magnitude = scores.abs().argsort(descending=True)
    assert log_alpha[by_magnitude].tolist() == sorted(log_alpha.tolist(), reverse=True)  # order kept, by |score|
    assert set((log_alpha > LOG_ALPHA_HALF).nonzero().flatten().tolist()) == {1, 3, 7}  # the top 30%
    assert float(log_alpha.max()) == pytest.approx(LOG_ALPHA_HALF + 5)                # d = 1 at the best edge
    assert float(log_alpha.min()) == pytest.approx(LOG_ALPHA_HALF - 5)                # d = -1 at the worst
    assert LOG_ALPHA_HALF == pytest.approx(-1.5986, abs=1e-4)
    # open gates are mostly kept, closed ones mostly not: the expected sparsity lies near the cut's
    assert expected_sparsity(log_alpha) == pytest.approx(0.7, abs=0.08)
    assert expected_sparsity(torch.full((4,), 10.0)) == pytest.approx(0.0, abs=1e-3)
    assert expected_sparsity(torch.full((4,), -10.0)) == pytest.approx(1.0, abs=1e-3)


def test_train_starts_from_the_scores_and_records_it():
    model, data = tiny("gpt2"), answer_pairs(n=8)
    pm = edgeprune.prunable(model)
    scored = edgeprune.attribute(pm, data, "eap")
    config = edgeprune.TrainConfig(edge_sparsity=0.95, **{k: v for k, v in QUICK.items() if k != "progress"})
    pm2, dataset, _, _ = prepare(model, data, config, init=scored)
    torch.testing.assert_close(pm2.gates.edge_log_alpha.detach(), init_log_alpha(scored.edge_scores.double()))
    warm, start = warm_config(config, pm2, scored)
    assert warm.ramp_from == pytest.approx(start["expected_sparsity"]) and 0.85 < warm.ramp_from < 0.95
    circuit = edgeprune.train(model, data, edge_sparsity=0.95, init=scored, **QUICK)
    assert circuit.config["init"] == start and start["source"] == "eap" and start["temperature"] == 0.2
    assert circuit.config["ramp_from"] == pytest.approx(warm.ramp_from)


def test_a_warm_run_resumes_only_from_its_own_start(tmp_path):
    model, data = tiny("gpt2"), answer_pairs(n=4)
    settings = dict(edge_sparsity=0.9, steps=2, batch_size=4, warmup_steps=1, ramp_steps=1, eval_every=0,
                    progress=False, checkpoint_dir=str(tmp_path))
    scores = torch.arange(137.0)
    edgeprune.train(model, data, init=scores, **settings)
    with pytest.raises(UserError, match="belongs to another run: init.fingerprint"):
        edgeprune.train(model, data, init=scores.flip(0), **settings)
    with pytest.raises(UserError, match="has finished"):
        edgeprune.train(model, data, init=scores, **settings)


def test_bad_warm_starts():
    model, data = tiny("gpt2"), answer_pairs(n=4)
    with pytest.raises(ValueError, match="has 5 scores but the model's graph has 137 edges"):
        edgeprune.train(model, data, edge_sparsity=0.9, init=torch.ones(5), **QUICK)
    other = edgeprune.attribute(edgeprune.prunable(tiny("gpt2", layers=1)), data, "eap")
    with pytest.raises(ValueError, match="computed on the graph"):
        edgeprune.train(model, data, edge_sparsity=0.9, init=other, **QUICK)
    with pytest.raises(ValueError, match="finite"):
        edgeprune.train(model, data, edge_sparsity=0.9, init=torch.full((137,), float("nan")), **QUICK)
    with pytest.raises(ValueError, match="fraction of edges starting closed"):
        edgeprune.train(model, data, edge_sparsity=0.9, init=torch.ones(137), init_sparsity=1.0, **QUICK)


# ---------------------------------------------------------------------- optimal ablation

def _closed_run(ablation, data, steps, lr=0.002):
    """Every edge gate closed and frozen (lr 0, log alpha -20): only optimal ablation's constants learn."""
    model = tiny("gpt2")
    config = edgeprune.TrainConfig(edge_sparsity=0.5, steps=steps, batch_size=8, lr=0.0, lambda_lr=0.0,
                                   warmup_steps=0, eval_every=0, ablation=ablation, ablation_lr=lr, weight_decay=0.0)
    pm, dataset, _, _ = prepare(model, data, config)
    with torch.no_grad():
        pm.gates.edge_log_alpha.fill_(-20.0)
    trainer = Trainer(pm, dataset, config)
    for _ in range(steps):
        trainer.step()
    closed = (torch.zeros(pm.graph.num_edges), torch.ones(pm.graph.num_writers))
    return pm, trainer, evaluate_gates(pm, dataset, *closed)["kl"]


def test_a_circuit_keeps_its_constants(tmp_path):
    """(Li and Janson's rule, start and first position: tests/test_optimal_ablation.py.)"""
    data = random_pairs(n=16)
    pm, trainer, _ = _closed_run("optimal", data, steps=4)
    # the saved circuit carries its constants and evaluates with them
    circuit = trainer.circuit()
    circuit.save(str(tmp_path / "run"))
    loaded = edgeprune.Circuit.load(str(tmp_path / "run"))
    assert loaded.config["ablation"] == "optimal" and set(loaded.ablation_values) == set(pm.constants.tensors())
    fresh = edgeprune.prunable(tiny("gpt2"), ablation="optimal")
    metrics = edgeprune.evaluate(fresh, loaded, data)
    assert metrics["kl"] == pytest.approx(edgeprune.evaluate(pm, circuit, data)["kl"], rel=1e-5)
    with pytest.raises(ValueError, match="has none"):
        edgeprune.evaluate(edgeprune.prunable(tiny("gpt2"), ablation="optimal"),
                           edgeprune.Circuit(circuit.graph, [], list(circuit.graph.writers)), data)


def test_the_constants_resume_from_a_checkpoint(tmp_path):
    data = random_pairs(n=8)
    settings = dict(edge_sparsity=0.5, ablation="optimal", steps=4, batch_size=4, warmup_steps=1, ramp_steps=2,
                    eval_every=0)
    straight = edgeprune.train(tiny("gpt2"), data, progress=False, **settings)
    pm, dataset, _, _ = prepare(tiny("gpt2"), data, edgeprune.TrainConfig(**settings))
    interrupted = Trainer(pm, dataset, edgeprune.TrainConfig(**settings), checkpoint_dir=str(tmp_path))
    for _ in range(2):
        interrupted.step()
    interrupted.save_checkpoint()
    resumed = edgeprune.train(tiny("gpt2"), data, progress=False, checkpoint_dir=str(tmp_path), **settings)
    assert set(resumed.ablation_values) == set(straight.ablation_values)
    for key, value in straight.ablation_values.items():
        torch.testing.assert_close(resumed.ablation_values[key], value)


# ---------------------------------------------------------------------- the matched objective

def test_logit_difference_gap():
    data = answer_pairs(n=5)
    batch = data.batch(range(5))
    g = torch.Generator().manual_seed(0)
    logits, full = torch.randn(5, 1, 61, generator=g), torch.randn(5, 1, 61, generator=g)
    rows = torch.arange(5)
    expected = ((logits[rows, 0, batch.answers] - logits[rows, 0, batch.distractors])
                - (full[rows, 0, batch.answers] - full[rows, 0, batch.distractors])) ** 2
    gap = logit_diff_gap(data.task, logits, data.task.log_probs(full), batch.answers, batch.distractors)
    torch.testing.assert_close(gap, expected, rtol=1e-5, atol=1e-6)


def test_training_on_the_logit_difference():
    circuit = edgeprune.train(tiny("gpt2"), answer_pairs(n=8), edge_sparsity=0.5, objective="logit_diff",
                              log_every=1, **QUICK)
    assert circuit.config["objective"] == "logit_diff"
    with pytest.raises(ValueError, match="objective='logit_diff' needs a counterfactual answer"):
        edgeprune.train(tiny("gpt2"), random_pairs(n=4), edge_sparsity=0.5, objective="logit_diff", **QUICK)
    with pytest.raises(ValueError, match="objective='accuracy' is not one of"):
        edgeprune.TrainConfig(edge_sparsity=0.5, objective="accuracy").validate()
