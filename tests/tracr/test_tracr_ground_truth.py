"""The weight-support circuits, re-derived from the shipped weights (method.md 7)."""
import pytest
import torch

import edgeprune.tracr as T
from edgeprune.evaluation import evaluate_gates
from edgeprune.models import prunable

EXPECTED = {  # method.md 7
    "reverse": [
        ("tok_embeds", "a0.h0.q"), ("tok_embeds", "a0.h0.k"), ("tok_embeds", "a0.h0.v"),
        ("tok_embeds", "m0"), ("a0.h0", "m0"),
        ("tok_embeds", "m1"), ("pos_embeds", "m1"), ("m0", "m1"),
        ("m1", "m2"),
        ("tok_embeds", "a3.h0.q"), ("m2", "a3.h0.q"), ("tok_embeds", "a3.h0.k"), ("pos_embeds", "a3.h0.k"),
        ("tok_embeds", "a3.h0.v"),
        ("a3.h0", "resid_post"),
    ],
    "xproportion": [
        ("tok_embeds", "m0"),
        ("tok_embeds", "a1.h0.q"), ("pos_embeds", "a1.h0.q"), ("tok_embeds", "a1.h0.k"), ("pos_embeds", "a1.h0.k"),
        ("m0", "a1.h0.v"),
        ("a1.h0", "resid_post"),
    ],
}
# Ground-truth edges whose removal (under zero ablation) leaves the task exact: the attention-
# query/key "one"/BOS plumbing of reverse's uniform selector-width head and of its final head.
REDUNDANT = {"reverse": {("tok_embeds", "a0.h0.q"), ("tok_embeds", "a0.h0.k"), ("tok_embeds", "a3.h0.q"),
                         ("tok_embeds", "a3.h0.k")},
             "xproportion": set()}


@pytest.mark.parametrize("name", T.PROGRAMS)
def test_ground_truth_rederived(name):
    prog = T.load(name)
    assert sorted(prog.ground_truth) == sorted(EXPECTED[name])  # derived from the weights vs method.md 7
    assert len(prog.ground_truth) == {"reverse": 15, "xproportion": 7}[name]
    assert set(prog.ground_truth) <= set(prog.graph.edges)
    nodes = {w for w, _ in prog.ground_truth}
    assert nodes == {"reverse": {"tok_embeds", "pos_embeds", "a0.h0", "m0", "m1", "m2", "a3.h0"},
                     "xproportion": {"tok_embeds", "pos_embeds", "m0", "a1.h0"}}[name]


def _evaluate(prog, edges):
    pm = prunable(prog.model, ablation="zero")
    gates = torch.zeros(pm.graph.num_edges)
    gates[[pm.graph.edge_index[e] for e in edges]] = 1
    return evaluate_gates(pm, prog.dataset, gates, torch.ones(pm.graph.num_writers), batch_size=64)


@pytest.mark.parametrize("name", T.PROGRAMS)
def test_ground_truth_is_exact_and_needed(name):
    prog = T.load(name)
    full = _evaluate(prog, prog.ground_truth)
    assert full["accuracy"] == 1.0 and full["kl"] < 1e-6
    minimal = [e for e in prog.ground_truth if e not in REDUNDANT[name]]
    assert _evaluate(prog, minimal)["accuracy"] == 1.0
    for drop in minimal:
        assert _evaluate(prog, [e for e in minimal if e != drop])["accuracy"] < 1.0, drop
