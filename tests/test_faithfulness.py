"""Faithfulness curves: the two ends exact, each budget's value equal to an independent evaluation of
the same edges, CPR and CMD the trapezoids of the curve, and the plot written."""
import pytest
import torch

import edgeprune
from edgeprune.curves import faithfulness
from edgeprune.loading import load_model
from edgeprune.mib import MIBGraph
from test_end_to_end import model_folder  # noqa: F401  (fixture)


def test_curve_ends_budgets_and_areas(model_folder, tmp_path):  # noqa: F811
    model, tok = load_model(model_folder)
    pm = edgeprune.prunable(model)
    data = edgeprune.tasks.get("ioi", tok, split="test", n=12)
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(pm.graph.num_edges, generator=g)
    curve = faithfulness(pm, scores, data, budgets=[0.0, 0.1, 0.5, 1.0], batch_size=5, label="random")
    assert curve.faithfulness[0] == pytest.approx(0.0, abs=1e-5)       # every edge patched: m(empty)
    assert curve.faithfulness[-1] == pytest.approx(1.0, abs=1e-5)      # every edge kept: m(full)
    assert curve.kl[-1] == pytest.approx(0.0, abs=1e-5)
    assert curve.cpr == pytest.approx(sum((b - a) * (x + y) / 2 for a, b, x, y in zip(
        curve.fractions, curve.fractions[1:], curve.faithfulness, curve.faithfulness[1:])))
    # the 50% budget, evaluated independently: the same edges through edgeprune.evaluate
    mib = MIBGraph(pm.graph)
    kept = mib.edge_mask(mib.top_edges(mib.scores_from(scores, probabilities=False), mib.budget_edges(0.5)))
    circuit = edgeprune.Circuit(pm.graph, [pm.graph.edges[i] for i in kept.nonzero().flatten().tolist()],
                                list(pm.graph.writers))
    m_c = edgeprune.evaluate(pm, circuit, data)["logit_difference"]
    m_full = edgeprune.evaluate(pm, None, data)["logit_difference"]
    m_empty = edgeprune.evaluate(pm, edgeprune.Circuit(pm.graph, [], list(pm.graph.writers)), data)["logit_difference"]
    assert curve.faithfulness[2] == pytest.approx((m_c - m_empty) / (m_full - m_empty), rel=1e-4)
    assert curve.edges[2] == len(circuit.edges)
    kl_curve = faithfulness(pm, scores, data, budgets=[0.0, 1.0], metric="kl")
    assert kl_curve.faithfulness == pytest.approx([0.0, 1.0], abs=1e-5)
    pytest.importorskip("matplotlib")
    from edgeprune.plotting import plot_curves
    written = plot_curves([curve, kl_curve], str(tmp_path / "curve.png"))
    assert all((tmp_path / name).stat().st_size > 1000 for name in ("curve.png", "curve.svg")) and len(written) == 2


def test_signed_scores_rank_by_sign_for_cpr_and_by_magnitude_for_cmd(model_folder):  # noqa: F811
    """MIB's convention: CPR cuts the ranking of the signed scores, CMD the ranking of |score|; the table
    shows both curves when they differ. One input node, so that every edge is one MIB edge (two
    embedding nodes' scores are summed into their MIB edge before any magnitude is taken)."""
    model, tok = load_model(model_folder)
    pm = edgeprune.prunable(model, embedding_nodes=1)
    data = edgeprune.tasks.get("ioi", tok, split="test", n=8)
    scores = torch.randn(pm.graph.num_edges, generator=torch.Generator().manual_seed(1))
    budgets = [0.0, 0.2, 0.5, 1.0]
    signed = faithfulness(pm, scores, data, budgets=budgets)
    magnitude = faithfulness(pm, scores.abs(), data, budgets=budgets)
    assert signed.faithfulness_abs == pytest.approx(magnitude.faithfulness, abs=1e-6)
    assert signed.faithfulness != pytest.approx(signed.faithfulness_abs, abs=1e-3)
    assert signed.cmd == pytest.approx(magnitude.cmd)
    assert "f (|score|)" in signed.table() and "f (|score|)" not in magnitude.table()


def test_bad_budgets_and_metrics(model_folder):  # noqa: F811
    with pytest.raises(ValueError, match="increasing fractions"):
        faithfulness(model_folder, torch.zeros(1), "ioi", budgets=[0.5, 0.1])
    with pytest.raises(ValueError, match="unknown metric"):
        faithfulness(model_folder, torch.zeros(1), "ioi", metric="accuracy")


def test_budget_sweep_runs_every_stage_from_the_last(tmp_path):
    from edgeprune.budgets import train_budgets
    from edgeprune.mib import for_budget
    from helpers.data import random_pairs
    from helpers.models import tiny
    circuits = train_budgets(tiny("gpt2"), random_pairs(n=8), budgets=[0.1, 0.5, 1.0], steps=12, stage_steps=6,
                             path=False, init=None, objective="kl", batch_size=4, warmup_steps=2, ramp_steps=6, eval_every=0, progress=False,
                             checkpoint_dir=str(tmp_path))
    assert sorted(circuits) == [0.1, 0.5, 1.0]
    assert circuits[0.5].config["stage"] == 0 and circuits[0.5].config["ramp_from"] == 0.0
    assert circuits[0.1].config["stage"] == 1 and circuits[0.1].config["ramp_from"] == pytest.approx(0.5)
    assert circuits[0.1].config["steps"] == 6 and circuits[0.1].config["edge_sparsity"] == pytest.approx(0.9)
    assert len(circuits[1.0].edges) == circuits[1.0].graph.num_edges
    assert for_budget(circuits, 0.2) is circuits[0.5] and for_budget(circuits, 0.001) is circuits[0.1]
    assert (tmp_path / "stage-0.5" / "checkpoint.pt").exists() and (tmp_path / "stage-0.1" / "checkpoint.pt").exists()
    with pytest.raises(ValueError, match="increasing fractions"):
        train_budgets(tiny("gpt2"), random_pairs(n=8), budgets=[0.5, 0.1])
