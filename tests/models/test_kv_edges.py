"""Key and value edges per query head (kv_edges="query", MIB's graph) on grouped-query models.

Against the float64 reference of models/per_head_kv.py (each query head's K and V input formed from
its own gates, written without edgeprune's forward): the gated forward, its gate gradients, EAP and
exact attribution scores; and against Hugging Face with every gate on.
"""
import pytest
import torch

import edgeprune
import edgeprune.attribution as attribution
from helpers.models import VOCAB, gated, tiny
from helpers.naive_attribution import logit_diff
from models.per_head_kv import PerHeadKV, float64_norms

GROUPED = ["llama", "qwen2"]   # 4 query heads, 2 KV heads; Qwen2 with q/k/v biases


def answer_data(b=3, s=6, seed=1):
    """A task dataset of random clean/corrupted pairs with answers, and its tensors."""
    from edgeprune.tasks.base import AnswerTask, Example, TaskDataset
    clean, corrupted = _ids(b, s, seed)
    positions, answers, distractors = torch.tensor([5, 4, 5]), torch.tensor([3, 7, 9]), torch.tensor([4, 8, 10])
    examples = [Example(clean[i].tolist(), corrupted[i].tolist(), [int(positions[i])], int(answers[i]),
                        int(distractors[i])) for i in range(b)]
    return TaskDataset(AnswerTask(), examples, pad_id=1), clean, corrupted, positions, answers, distractors


def _ids(b=2, s=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(2, VOCAB, (b, s), generator=g), torch.randint(2, VOCAB, (b, s), generator=g)


@pytest.fixture(scope="module", params=GROUPED)
def grouped64(request):
    model = float64_norms(tiny(request.param, dtype=torch.float64))
    return model, edgeprune.prunable(model, embedding_nodes=1, kv_edges="query"), PerHeadKV(model)


def test_graph_reads_keys_and_values_per_query_head(grouped64):
    _, pm, ref = grouped64
    g = pm.graph
    assert g.kv_edges == "query" and g.num_kv_heads == 2 and g.num_kv_readers == 4
    assert g.edges == ref.edges()              # the reference's own enumeration, names and order
    assert g.attn_reader_names(0)[4:8] == ["a0.h0.k", "a0.h1.k", "a0.h2.k", "a0.h3.k"]


@pytest.mark.parametrize("family", GROUPED + ["mistral", "qwen3"])
def test_every_gate_on_equals_hf_and_every_edge_off_the_corrupted_run(family):
    model = tiny(family)
    ids, cids = _ids()
    for e in (0, 1):
        pm = edgeprune.prunable(model, embedding_nodes=e, kv_edges="query")
        assert (gated(pm, ids, cids) - model(ids).logits).abs().max() < 1e-4
    assert (gated(pm, ids, cids, circuit=[]) - model(cids).logits).abs().max() < 1e-4


def test_random_gates_and_gradients_equal_the_reference(grouped64):
    _, pm, ref = grouped64
    ids, cids = _ids()
    g = torch.Generator().manual_seed(3)
    edges = torch.rand(pm.graph.num_edges, generator=g, dtype=torch.float64).requires_grad_()
    nodes = torch.ones(pm.graph.num_writers, dtype=torch.float64)
    out = pm(ids, edges=edges, nodes=nodes, record=pm.record(cids))
    want = ref.logits(ids, edges, pm.graph.edges, ref.corrupted_writers(cids))
    torch.testing.assert_close(out, want, rtol=1e-9, atol=1e-9)
    weights = torch.randn_like(want)
    got_grad = torch.autograd.grad((out * weights).sum(), edges)[0]
    want_grad = torch.autograd.grad((want * weights).sum(), edges)[0]
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-8, atol=1e-10)
    # the K/V gates of one group's query heads act apart: their gradients differ
    start = pm.graph.segments[5].start      # a1.k: rows a1.h0.k .. a1.h3.k over the prefix of layer 1
    cols = pm.graph.segments[5].cols
    per_head = want_grad[start:start + 4 * cols].view(4, cols)
    assert (per_head[0] - per_head[1]).abs().max() > 1e-3 * per_head.abs().max()


def _group_reader(reader: str, group_size: int = 2) -> str:
    """A query head's key or value reader as its KV group's ("a1.h3.k" -> "a1.h1.k"); others unchanged."""
    parts = reader.split(".")
    if len(parts) != 3 or parts[2] == "q":
        return reader
    return f"{parts[0]}.h{int(parts[1][1:]) // group_size}.{parts[2]}"


def test_a_group_graph_is_the_query_graph_with_tied_gates():
    """kv_edges="group" equals "query" with each group's K/V gates copied to its query heads."""
    model = tiny("qwen2", dtype=torch.float64)
    ids, cids = _ids()
    group = edgeprune.prunable(model, embedding_nodes=1)
    query = edgeprune.prunable(model, embedding_nodes=1, kv_edges="query")
    assert group.graph.kv_edges == "group" and group.graph.num_edges < query.graph.num_edges
    edges = torch.rand(group.graph.num_edges, dtype=torch.float64)
    index = group.graph.edge_index
    tied = torch.stack([edges[index[(w, _group_reader(r))]] for w, r in query.graph.edges])
    nodes = torch.ones(group.graph.num_writers, dtype=torch.float64)
    a = group(ids, edges=edges, nodes=nodes, record=group.record(cids))
    b = query(ids, edges=tied, nodes=nodes, record=query.record(cids))
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_eap_and_exact_scores_per_query_head_equal_the_reference(grouped64):
    model, pm, ref = grouped64
    data, clean, corrupted, positions, answers, distractors = answer_data()
    m = logit_diff(positions, answers, distractors)
    c = ref.corrupted_writers(corrupted)
    edges = pm.graph.edges
    ones = torch.ones(len(edges), dtype=torch.float64, requires_grad=True)
    want = torch.autograd.grad(m(ref.logits(clean, ones, edges, c)).mean(), ones)[0]
    got = attribution.attribute(pm, data, "eap", batch_size=2).edge_scores.double()
    assert float(want.abs().max()) > 1e-3
    torch.testing.assert_close(got, want, rtol=0, atol=1e-9 * float(want.abs().max()))

    # exact: m(every edge) - m(every edge but e), on key and value edges of two query heads of one group
    full = m(ref.logits(clean, torch.ones(len(edges), dtype=torch.float64), edges, c))
    kv = [i for i, (w, r) in enumerate(edges) if r in ("a1.h2.k", "a1.h3.k", "a1.h2.v", "a1.h3.v")
          and w in ("embeds", "a0.h1", "m0")]
    assert len(kv) == 12
    exact = attribution.attribute(pm, data, "exact", batch_size=3).edge_scores.double()
    for i in kv:
        without = torch.ones(len(edges), dtype=torch.float64)
        without[i] = 0
        want_i = float((full - m(ref.logits(clean, without, edges, c))).mean())
        assert exact[i].item() == pytest.approx(want_i, abs=1e-10)


def test_attribute_scores_mibs_graph_by_default():
    model = tiny("llama", dtype=torch.float64)
    scored = attribution.attribute(model, answer_data()[0], "eap", batch_size=3)
    assert scored.graph.kv_edges == "query" and scored.graph.embedding_nodes == 1
    grouped = attribution.attribute(model, answer_data()[0], "eap", batch_size=3, kv_edges="group")
    assert grouped.graph.kv_edges == "group" and grouped.graph.num_edges < scored.graph.num_edges


# MIB's grouped models at reduced size (helpers/mib.py), Gemma 3 (one KV head) and OLMo 2 given four
# KV heads (its k_norm then spans the keys of every query head), with key and value readers per
# query head: both ends exact; fractional gates against the naive float64 forward where the adapter
# differs from Llama's (Gemma 2's caps and output norms, OLMo 2's whole-projection norms).
MIB_GROUPED = {"Qwen/Qwen2.5-0.5B": {}, "google/gemma-2-2b": {}, "meta-llama/Llama-3.1-8B": {},
               "google/gemma-3-1b-pt": {}, "allenai/OLMo-2-0425-1B": {"num_key_value_heads": 4}}


def _mib_model(name, dtype=torch.float32):
    from helpers import mib
    overrides = MIB_GROUPED[name]
    return mib.tiny(name, dtype, **overrides) if overrides else mib.shared(name, dtype)


@pytest.mark.parametrize("name", MIB_GROUPED)
def test_mib_models_per_query_head_both_ends(name):
    from helpers import mib
    model = _mib_model(name)
    ids, cids = mib.ids()
    pm = edgeprune.prunable(model, embedding_nodes=1, kv_edges="query")
    assert pm.graph.num_kv_readers == pm.graph.num_heads > pm.graph.num_kv_heads
    assert (gated(pm, ids, cids) - model(ids).logits).abs().max() < 1e-4
    assert (gated(pm, ids, cids, circuit=[]) - model(cids).logits).abs().max() < 1e-4


@pytest.mark.parametrize("name", ["google/gemma-2-2b", "allenai/OLMo-2-0425-1B"])
def test_mib_models_per_query_head_match_naive_float64(name):
    from helpers import mib
    from models.naive import assert_matches_naive, naive_forward, writer_outputs
    pm = edgeprune.prunable(_mib_model(name, torch.float64), embedding_nodes=1, kv_edges="query")
    ids, cids = mib.ids()
    g = torch.Generator().manual_seed(3)
    edges = torch.rand(pm.graph.num_edges, generator=g, dtype=torch.float64).requires_grad_()
    nodes = torch.rand(pm.graph.num_writers, generator=g, dtype=torch.float64).requires_grad_()
    out = pm(ids, edges=edges, nodes=nodes, record=pm.record(cids))
    ref = naive_forward(pm.adapter, pm.graph, ids, writer_outputs(pm.adapter, pm.graph, cids)[0], edges, nodes)
    assert_matches_naive(out, ref, edges, nodes)


def test_budget_sweeps_train_mibs_graph_and_circuits_keep_it(tmp_path):
    """train_budgets defaults to K/V edges per query head, train to the grouped graph; a saved circuit
    keeps its graph, and evaluate rebuilds the model on it."""
    from edgeprune import Circuit
    from helpers.data import answer_pairs
    model = tiny("qwen2")
    data = answer_pairs(n=4)
    short = dict(steps=3, warmup_steps=1, ramp_steps=2, batch_size=4, eval_every=0, embedding_nodes=1, progress=False)
    sweep = edgeprune.train_budgets(model, data, budgets=[0.5], **short)
    assert sweep[0.5].graph.kv_edges == "query" and sweep[0.5].graph.num_kv_readers == 4
    trained = edgeprune.train(model, data, edge_sparsity=0.5, **short)
    assert trained.graph.kv_edges == "group"
    sweep[0.5].save(str(tmp_path / "c"))
    loaded = Circuit.load(str(tmp_path / "c"))
    assert loaded.graph == sweep[0.5].graph and torch.equal(loaded.edge_scores, sweep[0.5].edge_scores)
    metrics = edgeprune.evaluate(model, loaded, data)
    assert metrics["n"] == 4


def test_command_line_options():
    from edgeprune.cli import build_parser
    parser = build_parser()
    assert parser.parse_args(["attribute", "m", "ioi", "--out", "o"]).kv_edges == "query"
    assert parser.parse_args(["attribute", "m", "ioi", "--out", "o", "--kv-edges", "group"]).kv_edges == "group"
    prune = ["prune", "m", "ioi", "--out", "o", "--budgets", "mib"]
    assert parser.parse_args(prune).kv_edges is None          # train_budgets then picks "query", train "group"
    assert parser.parse_args(prune + ["--kv-edges", "group"]).kv_edges == "group"
    with pytest.raises(SystemExit):
        parser.parse_args(prune + ["--kv-edges", "heads"])


def test_curves_evaluate_on_mibs_graph_where_a_grouped_circuit_is_itself():
    """faithfulness builds the per-query-head graph: a grouped circuit's K/V edge is kept there on
    every query head of its group, which is the grouped circuit itself."""
    from edgeprune.curves import circuit_faithfulness
    model = tiny("llama", dtype=torch.float64)
    data = answer_data()[0]
    scored = attribution.attribute(model, data, "eap", batch_size=3, kv_edges="group")
    circuit = scored.at_edges(scored.graph.num_edges // 3)
    assert any(r.endswith(".k") for _, r in circuit.edges)
    on_query = circuit_faithfulness(model, circuit, data)
    on_group = circuit_faithfulness(edgeprune.prunable(model, embedding_nodes=1), circuit, data)
    assert on_query == pytest.approx(on_group, abs=1e-10) and abs(on_query) > 1e-3
    # a per-head ranking: the default curve is the one on the per-query-head graph, not the grouped one
    from edgeprune.curves import faithfulness
    per_head = attribution.attribute(model, data, "eap", batch_size=3)
    curves = [faithfulness(m, per_head, data, budgets=[0.1, 0.3]).faithfulness for m in
              (model, edgeprune.prunable(model, embedding_nodes=1, kv_edges="query"),
               edgeprune.prunable(model, embedding_nodes=1, kv_edges="group"))]
    assert curves[0] == pytest.approx(curves[1], abs=1e-10)
    assert curves[0] != pytest.approx(curves[2], abs=1e-6)
