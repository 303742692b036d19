"""MIB's circuit format and budgets: names, counts, the KV-group expansion, the embedding union,
files written by hand from MIB's loader rules, round trips, and the top-n cut with its pruning."""
import json

import pytest
import torch

from edgeprune import Circuit, Graph
from edgeprune.mib import BUDGETS, MIBGraph, cumulative_area, mib_edge_count


@pytest.mark.parametrize("name,layers,heads,parallel,count", [
    ("GPT-2 small", 12, 12, False, 32491), ("Qwen2.5-0.5B", 24, 14, False, 179749),
    ("Gemma-2-2B", 26, 8, False, 74218), ("Llama-3.1-8B", 32, 32, False, 1592881)])
def test_edge_counts_from_configs(name, layers, heads, parallel, count):
    assert mib_edge_count(layers, heads, parallel) == count


def test_counts_and_names_match_edgeprunes_graph_with_one_input_node():
    for parallel in (False, True):  # GPT-NeoX: a layer's MLP does not read that layer's heads
        g = Graph(3, 4, 4, 1, parallel)
        m = MIBGraph(g)
        assert m.num_edges == g.num_edges
        names = set(m.edge_names())
        assert ("a1.h2->m1" in names) is not parallel and "a0.h3->m1" in names
        assert {"input->a0.h0<q>", "input->a0.h3<v>", "m2->logits", "input->logits"} <= names
        assert "a1.h0->a1.h1<q>" not in names and "m1->m1" not in names
    assert MIBGraph(Graph(1, 2, 2, 1)).cfg == {"n_layers": 1, "n_heads": 2, "parallel_attn_mlp": False, "d_model": 0}


def test_grouped_kv_edges_and_the_embedding_union():
    g = Graph(2, 4, 2, 2)  # two KV groups of two query heads; token and position embeddings
    m = MIBGraph(g)
    p = torch.zeros(g.num_edges)
    index = g.edge_index
    p[index[("a0.h1", "a1.h1.k")]] = 0.7      # group 1 = query heads 2 and 3
    p[index[("tok_embeds", "a1.h0.q")]] = 0.5
    p[index[("pos_embeds", "a1.h0.q")]] = 0.2
    scores = m.scores_from(p)
    named = dict(zip(m.edge_names(), scores[m.real].tolist()))
    assert named["a0.h1->a1.h2<k>"] == pytest.approx(0.7) and named["a0.h1->a1.h3<k>"] == pytest.approx(0.7)
    assert named["a0.h1->a1.h1<k>"] == 0 and named["a0.h1->a1.h0<k>"] == 0
    assert named["input->a1.h0<q>"] == pytest.approx(1 - 0.5 * 0.8)
    signed = dict(zip(m.edge_names(), m.scores_from(p, probabilities=False)[m.real].tolist()))
    assert signed["input->a1.h0<q>"] == pytest.approx(0.5 + 0.2)  # attribution: the deltas add
    # back: a K edge is kept when any of its query heads' copies is; input keeps both embedding edges
    fb = {n: i for i, n in enumerate(m.forward_names)}, {n: i for i, n in enumerate(m.backward_names)}
    in_graph = torch.zeros_like(m.real)
    in_graph[fb[0]["a0.h1"], fb[1]["a1.h3<k>"]] = True
    in_graph[fb[0]["input"], fb[1]["m0"]] = True
    kept = {g.edges[i] for i in m.edge_mask(in_graph).nonzero().flatten().tolist()}
    assert kept == {("a0.h1", "a1.h1.k"), ("tok_embeds", "m0"), ("pos_embeds", "m0")}


def test_a_file_written_by_hand_from_mibs_loader_rules(tmp_path):
    """One layer, two heads: cfg, nodes {name: {in_graph}}, edges {'parent->child<x>': {score, in_graph}}."""
    edges = {}
    for parent in ("input",):
        for h in range(2):
            for x in "qkv":
                edges[f"{parent}->a0.h{h}<{x}>"] = {"score": 0.1 * h, "in_graph": False}
    for parent in ("input", "a0.h0", "a0.h1"):
        edges[f"{parent}->m0"] = {"score": 0.3, "in_graph": False}
    for parent in ("input", "a0.h0", "a0.h1", "m0"):
        edges[f"{parent}->logits"] = {"score": 0.2, "in_graph": False}
    edges["input->a0.h1<v>"] = {"score": 0.9, "in_graph": True}
    edges["a0.h1->logits"] = {"score": 0.8, "in_graph": True}
    path = tmp_path / "hand.json"
    path.write_text(json.dumps({"cfg": {"n_layers": 1, "n_heads": 2, "parallel_attn_mlp": False, "d_model": 8},
                                "nodes": {"input": {"in_graph": True}, "a0.h0": {"in_graph": False},
                                          "a0.h1": {"in_graph": True}, "m0": {"in_graph": False},
                                          "logits": {"in_graph": True}},
                                "edges": edges}))
    assert len(edges) == MIBGraph(Graph(1, 2, 2, 1)).num_edges == 13
    c = Circuit.from_mib(str(path), Graph(1, 2, 2, 2))
    assert set(c.edges) == {("tok_embeds", "a0.h1.v"), ("pos_embeds", "a0.h1.v"), ("a0.h1", "resid_post")}
    index = c.graph.edge_index
    assert c.edge_scores[index[("a0.h0", "m0")]] == pytest.approx(0.3)
    # the input edge's score is split between the embedding edges, and adds back to itself
    assert c.edge_scores[index[("pos_embeds", "a0.h1.v")]] == pytest.approx(0.45)
    named = dict(zip(MIBGraph(c.graph).edge_names(), c.mib_scores(MIBGraph(c.graph))[MIBGraph(c.graph).real].tolist()))
    assert named["input->a0.h1<v>"] == pytest.approx(0.9) and named["a0.h0->m0"] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="n_heads=2, but this model has 3"):
        Circuit.from_mib(str(path), Graph(1, 3, 3, 1))
    edges["a0.h0->a0.h1<q>"] = {"score": 1.0, "in_graph": True}
    path.write_text(json.dumps({"cfg": {"n_layers": 1, "n_heads": 2}, "nodes": {}, "edges": edges}))
    with pytest.raises(ValueError, match="'a0.h0->a0.h1<q>' is not in this model's MIB graph"):
        Circuit.from_mib(str(path), Graph(1, 2, 2, 1))


@pytest.mark.parametrize("fmt", ["json", "pt"])
def test_round_trip(tmp_path, fmt):
    g = Graph(2, 3, 3, 1)
    scores = torch.randn(g.num_edges)
    circuit = Circuit(g, [g.edges[i] for i in (0, 5, 40)], list(g.writers), edge_scores=scores, score_kind="score")
    (path,) = circuit.to_mib(str(tmp_path / f"c.{fmt}"), format=fmt)
    back = Circuit.from_mib(path, g)
    assert back.edges == circuit.edges
    torch.testing.assert_close(back.edge_scores, scores)


def test_top_n_keeps_the_best_edges_and_prunes_the_dangling():
    g = Graph(1, 2, 2, 1)
    m = MIBGraph(g)
    f = {n: i for i, n in enumerate(m.forward_names)}
    b = {n: i for i, n in enumerate(m.backward_names)}
    scores = torch.zeros(m.n_forward, m.n_backward)
    scores[f["a0.h0"], b["m0"]] = 3.0          # m0 has no path to the logits: dropped with it
    scores[f["input"], b["a0.h1<q>"]] = 2.0
    scores[f["a0.h1"], b["logits"]] = 1.0
    scores[f["a0.h0"], b["logits"]] = 1.0      # a0.h0 has no input: dropped
    got = m.top_edges(scores, 4)
    kept = {(m.forward_names[i], m.backward_names[j]) for i, j in got.nonzero().tolist()}
    assert kept == {("input", "a0.h1<q>"), ("a0.h1", "logits")}
    # ties go to the earlier edge in MIB's row-major order: input's row before a0.h1's
    tied = torch.zeros(m.n_forward, m.n_backward)
    tied[f["a0.h1"], b["logits"]] = tied[f["input"], b["logits"]] = 1.0
    tie = m.top_edges(tied, 1)
    assert [(m.forward_names[i], m.backward_names[j]) for i, j in tie.nonzero().tolist()] == [("input", "logits")]
    assert m.budget_edges(0.5) == 6 and m.budget_edges(1.0) == 13
    with pytest.raises(ValueError, match="fraction of edges kept"):
        m.budget_edges(1.5)


def test_budget_folder_holds_one_binary_circuit_per_budget(tmp_path):
    g = Graph(2, 4, 4, 2)
    circuit = Circuit(g, [], list(g.writers), edge_scores=torch.randn(g.num_edges))
    files = circuit.to_mib(str(tmp_path / "ioi_gpt2"), budgets=BUDGETS)
    assert len(files) == 9 and files[0].endswith("ioi_gpt2/0.1.json") and files[-1].endswith("ioi_gpt2/50.json")
    total = MIBGraph(g).num_edges
    for path, fraction in zip(files, BUDGETS):
        edges = json.load(open(path))["edges"]
        kept = sum(e["in_graph"] for e in edges.values())
        assert len(edges) == total and kept <= int(fraction * total)


def test_areas_are_trapezoids_over_the_fractions():
    assert cumulative_area([0, 0.5, 1], [0, 1, 1]) == pytest.approx(0.25 + 0.5)
    assert cumulative_area(list(BUDGETS), [1.0] * 10) == pytest.approx(1 - 0.001)


def test_one_attention_writer_per_layer_maps_to_every_head():
    g = Graph(2, 4, 2, 1, attention_writers="layer")
    m = MIBGraph(g)
    assert m.num_edges == mib_edge_count(2, 4)
    p = torch.zeros(g.num_edges)
    p[g.edge_index[("a0", "a1.h1.v")]] = 0.6   # KV group 1: query heads 2 and 3
    named = dict(zip(m.edge_names(), m.scores_from(p)[m.real].tolist()))
    assert [named[f"a0.h{h}->a1.h{q}<v>"] for h in range(4) for q in (2, 3)] == pytest.approx([0.6] * 8)
    assert named["a0.h2->a1.h1<v>"] == 0
    one = torch.zeros_like(m.real)
    one[m.forward_names.index("a0.h2"), m.backward_names.index("a1.h2<v>")] = True
    assert [g.edges[i] for i in m.edge_mask(one).nonzero().flatten().tolist()] == [("a0", "a1.h1.v")]


def _mib_name(edge: tuple[str, str]) -> str:
    """edgeprune's (writer, reader) as MIB names it: input, a{l}.h{h}<q|k|v>, logits."""
    writer, reader = edge
    writer = "input" if writer == "embeds" else writer
    if reader == "resid_post":
        reader = "logits"
    elif reader.count(".") == 2:
        head, kind = reader.rsplit(".", 1)
        reader = f"{head}<{kind}>"
    return f"{writer}->{reader}"


def test_key_and_value_readers_per_query_head_are_mibs_edges_one_to_one():
    g = Graph(2, 4, 2, 1, kv_edges="query")
    m = MIBGraph(g)
    assert g.num_edges == m.num_edges == mib_edge_count(2, 4) > Graph(2, 4, 2, 1).num_edges
    assert "kv_edges" not in m.cfg                         # MIB's own graph: nothing to flag
    index = m.edge_map[m.real][:, 0]                       # MIB's edges, row-major, to edgeprune's
    assert sorted(index.tolist()) == list(range(g.num_edges))
    assert [_mib_name(g.edges[i]) for i in index.tolist()] == m.edge_names()


@pytest.mark.parametrize("fmt", ["json", "pt"])
def test_per_query_head_circuit_round_trips_exactly(tmp_path, fmt):
    import warnings
    g = Graph(2, 4, 2, 1, kv_edges="query")
    scores = torch.randn(g.num_edges, generator=torch.Generator().manual_seed(0))
    edges = [e for i, e in enumerate(g.edges) if i % 7 == 0]
    assert {r for _, r in edges} >= {"a1.h1.k", "a1.h3.k"}     # two query heads of one KV group, apart
    circuit = Circuit(g, edges, list(g.writers), edge_scores=scores, score_kind="score")
    with warnings.catch_warnings():
        warnings.simplefilter("error")                      # nothing merged, nothing copied: no warning
        (path,) = circuit.to_mib(str(tmp_path / f"c.{fmt}"), format=fmt)
        back = Circuit.from_mib(path, g)
    assert back.edges == circuit.edges
    assert torch.equal(back.edge_scores, scores)


def test_grouped_graphs_say_so_on_export_and_on_import(tmp_path):
    grouped, per_head = Graph(2, 4, 2, 1), Graph(2, 4, 2, 1, kv_edges="query")
    scores = torch.randn(grouped.num_edges)
    with pytest.warns(UserWarning, match="one key and one value reader per KV group"):
        (path,) = Circuit(grouped, [], list(grouped.writers), edge_scores=scores, score_kind="score").to_mib(
            str(tmp_path / "grouped.json"))
    assert json.load(open(path))["cfg"]["kv_edges"] == "group"
    # distinct per-head scores onto the grouped graph: the two copies of every grouped K/V edge differ
    p = torch.arange(per_head.num_edges, dtype=torch.float32)
    (path,) = Circuit(per_head, [], list(per_head.writers), edge_scores=p, score_kind="score").to_mib(
        str(tmp_path / "per_head.json"))
    merged = 2 * 2 * (1 + 6)   # K and V, two KV groups, over layer 0's one writer and layer 1's six
    with pytest.warns(UserWarning, match=f"{merged} edge\\(s\\) of the graph .* stand for several MIB edges"):
        back = Circuit.from_mib(path, grouped)
    # each grouped K/V edge takes the larger of its two query heads' scores
    k = per_head.edge_index
    assert back.edge_scores[grouped.edge_index[("m0", "a1.h1.k")]] == p[k[("m0", "a1.h3.k")]]
