"""MIB's input node on a model whose graph has no embedding node (embedding_nodes=0, the Llama-family
default): such a circuit has no score for MIB's input edges, so every MIB ranking of it (curves,
comparisons, scored exports) is refused with the fix, never filled with a made-up score; its binary
membership stays exportable (the clean embeddings reach every reader, so every input edge is in it);
attribution scores the input edges for real through one embedding node."""
import json

import pytest
import torch

import edgeprune
from edgeprune import Circuit, Graph
from edgeprune.budgets import train_budgets
from edgeprune.mib import MIBGraph
from helpers.data import answer_pairs
from helpers.models import tiny

FIX = "embedding_nodes=1"


def e0_circuit(scored: bool = True) -> Circuit:
    g = Graph(2, 4, 4, 0)
    scores = torch.rand(g.num_edges, generator=torch.Generator().manual_seed(0))
    return Circuit(g, list(g.edges[:7]), list(g.writers), edge_scores=scores if scored else None, score_kind="score")


def test_scores_of_a_graph_without_embedding_nodes_are_refused(tmp_path):
    circuit = e0_circuit()
    with pytest.raises(ValueError, match=FIX):
        circuit.mib_scores(MIBGraph(circuit.graph))
    with pytest.raises(ValueError, match=FIX):
        circuit.to_mib(str(tmp_path / "importances.json"))
    with pytest.raises(ValueError, match=FIX):
        circuit.to_mib(str(tmp_path / "budgets"), budgets=[0.1])
    with pytest.raises(ValueError, match=FIX):
        edgeprune.compare(circuit, circuit)
    model = tiny("llama")
    with pytest.raises(ValueError, match=FIX):
        edgeprune.faithfulness(edgeprune.prunable(model), torch.rand(circuit.graph.num_edges), answer_pairs(),
                               budgets=[0.5, 1.0])


def test_the_membership_of_a_graph_without_embedding_nodes_keeps_every_input_edge(tmp_path):
    """Binary: each MIB edge's score is its membership, and every input edge is in the circuit."""
    circuit = e0_circuit(scored=False)
    (path,) = circuit.to_mib(str(tmp_path / "binary.json"))
    edges = json.load(open(path))["edges"]
    inputs = {name: e for name, e in edges.items() if name.startswith("input->")}
    assert len(inputs) == MIBGraph(circuit.graph).n_backward
    assert all(e["in_graph"] and e["score"] == 1.0 for e in inputs.values())
    kept = {f"{w}->{r}" for w, r in circuit.edges}
    assert {n for n, e in edges.items() if e["in_graph"] and not n.startswith("input->")} == \
        {n for n in edges if not n.startswith("input->") and _edgeprune_name(n) in kept}
    assert all(e["score"] == float(e["in_graph"]) for e in edges.values())


def test_a_mib_file_onto_a_graph_without_embedding_nodes_is_refused(tmp_path):
    """Its input edges, in or out of the file's circuit, have no edge to stand for them there."""
    g = Graph(2, 4, 4, 1)
    (path,) = Circuit(g, list(g.edges[:5]), list(g.writers), edge_scores=torch.rand(g.num_edges),
                      score_kind="score").to_mib(str(tmp_path / "c.json"))
    assert len(Circuit.from_mib(path, g).edges) == 5
    with pytest.raises(ValueError, match=r"no embedding node .* embedding_nodes=1"):
        Circuit.from_mib(path, Graph(2, 4, 4, 0))


def _edgeprune_name(mib_name: str) -> str:
    """'a0.h1->a1.h3<k>' -> 'a0.h1->a1.h3.k'."""
    parent, child = mib_name.split("->")
    child = "resid_post" if child == "logits" else child.replace("<", ".").rstrip(">")
    return f"{parent}->{child}"


def test_a_budget_sweep_without_embedding_nodes_is_refused_before_training():
    model = tiny("llama")
    with pytest.raises(ValueError, match="before|embedding_nodes=1"):
        train_budgets(model, answer_pairs(), budgets=[0.5, 1.0], steps=2, stage_steps=1, batch_size=4,
                      eval_every=0, progress=False)


def test_attribution_scores_the_input_edges_through_one_embedding_node(tmp_path):
    """On a Llama (default E=0) attribute builds one embedding node: MIB's input edges carry its edges' scores."""
    model = tiny("llama").double()
    scored = edgeprune.attribute(model, answer_pairs(), "eap", tokenizer=None)
    g = scored.graph
    assert g.embedding_nodes == 1
    mib = MIBGraph(g)
    named = dict(zip(mib.edge_names(), scored.mib_scores(mib)[mib.real].tolist()))
    for reader, child in (("m0", "m0"), ("a1.h2.q", "a1.h2<q>"), ("resid_post", "logits")):
        want = float(scored.edge_scores[g.edge_index[("embeds", reader)]])
        assert named[f"input->{child}"] == pytest.approx(want, abs=1e-6)
    assert len({round(v, 6) for k, v in named.items() if k.startswith("input->")}) > 3   # real, varied scores
    (path,) = scored.to_mib(str(tmp_path / "importances.json"))
    assert json.load(open(path))["edges"]["input->m0"]["score"] == pytest.approx(named["input->m0"])
