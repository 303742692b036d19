"""edgeprune.attribute against an independent reference: the same scores computed on the stock Hugging
Face GPT-2 with PyTorch hooks only (helpers/naive_attribution.py), both in float64; and on the
grouped-query Llama and the parallel-residual GPT-NeoX, against finite differences and the stock
model's own forward."""
import pytest
import torch

import edgeprune
import edgeprune.attribution as attribution
from edgeprune.curves import faithfulness
from edgeprune.graph import num_edges
from edgeprune.tasks.base import AnswerTask, Example, TaskDataset
from helpers.data import random_pairs
from helpers.models import tiny
from helpers.naive_attribution import HookedGPT2, logit_diff, neg_kl

B, S = 3, 6


def answer_data(vocab=61, seed=1):
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(2, vocab, (B, S), generator=g)
    corrupted = torch.randint(2, vocab, (B, S), generator=g)
    positions, answers, distractors = torch.tensor([5, 4, 5]), torch.tensor([3, 7, 9]), torch.tensor([4, 8, 10])
    examples = [Example(clean[i].tolist(), corrupted[i].tolist(), [int(positions[i])], int(answers[i]),
                        int(distractors[i])) for i in range(B)]
    return TaskDataset(AnswerTask(), examples, pad_id=1), clean, corrupted, positions, answers, distractors


@pytest.fixture(scope="module")
def gpt2():
    model = tiny("gpt2").double()
    data, clean, corrupted, positions, answers, distractors = answer_data()
    metrics = {"logit_diff": logit_diff(positions, answers, distractors),
               "kl": neg_kl(positions, model(clean).logits.detach())}
    return edgeprune.prunable(model), HookedGPT2(model), data, clean, corrupted, metrics


def as_vector(graph, scores: dict) -> torch.Tensor:
    assert set(scores) == set(graph.edges)
    return torch.tensor([scores[e] for e in graph.edges], dtype=torch.float64)


@pytest.mark.parametrize("method, metric", [("eap", "logit_diff"), ("eap-ig-inputs", "logit_diff"),
                                            ("clean-corrupted", "logit_diff"), ("eap-ig-activations", "logit_diff"),
                                            ("eap-ig-gates", "logit_diff"), ("eap-ig-inputs", "kl"),
                                            ("eap-ig-activations", "kl"), ("eap-ig-gates", "kl")])
def test_gradient_methods_match_the_hooked_model(gpt2, method, metric):
    pm, naive, data, clean, corrupted, metrics = gpt2
    ours = attribution.attribute(pm, data, method, metric=metric, steps=3, batch_size=2)  # two batches: 2 + 1
    ref = as_vector(pm.graph, naive.scores(clean, corrupted, metrics[metric], method, steps=3))
    assert ours.score_kind == "score" and ours.config["method"] == method
    assert float(ref.abs().max()) > 1e-4                 # the reference scores something
    torch.testing.assert_close(ours.edge_scores.double(), ref, rtol=0, atol=1e-9 * float(ref.abs().max()))


def test_exact_matches_per_edge_patching(gpt2):
    pm, naive, data, clean, corrupted, metrics = gpt2
    edges = pm.graph.edges[::3]   # every reader kind, every layer; each needs its own patched forward
    ref = naive.scores(clean, corrupted, metrics["kl"], "exact", edges=edges)
    ref = torch.tensor([ref[e] for e in edges], dtype=torch.float64)
    ours = attribution.attribute(pm, data, "exact", metric="kl", batch_size=2).edge_scores.double()[::3]
    assert float(ref.abs().max()) > 1e-4 and int((ref.abs() > 1e-6).sum()) > 10
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-9 * float(ref.abs().max()))


def test_exact_gate_sets_equal_one_forward_per_edge():
    """The gate-set read (G ablations per forward, a last partial group) against flat gates through the kernels."""
    pm, data = edgeprune.prunable(tiny("gpt2", layers=1).double()), answer_data()[0]
    runs = [attribution.attribute(pm, data, "exact", batch_size=2, exact_sets=sets).edge_scores for sets in (0, 5, None)]
    assert float(runs[0].abs().max()) > 1e-3
    for other in runs[1:]:
        torch.testing.assert_close(other, runs[0], rtol=0, atol=1e-12)


def test_integrated_gradients_along_the_gates_is_complete(gpt2):
    """The scores of eap-ig-gates sum to about m(full) - m(empty): integrated gradients' completeness."""
    pm, _, data, *_ = gpt2
    total = float(attribution.attribute(pm, data, "eap-ig-gates", steps=24).edge_scores.sum())
    curve = faithfulness(pm, torch.zeros(pm.graph.num_edges), data, budgets=[0.0, 1.0])
    assert total == pytest.approx(curve.full - curve.empty, rel=0.05)


@pytest.mark.parametrize("family", ["llama", "gpt_neox"])
def test_grouped_and_parallel_models(family):
    """GQA keeps one gate per KV group: a K or V edge's score is its gate's derivative (finite
    differences), and the inputs methods run the stock model on interpolated embeddings."""
    model = tiny(family).double()
    cfg = model.config
    data = answer_data()[0]
    pm = edgeprune.prunable(model, embedding_nodes=1)
    K = getattr(cfg, "num_key_value_heads", cfg.num_attention_heads)
    assert pm.graph.num_edges == num_edges(2, 4, 1, K, parallel=family == "gpt_neox")
    eap = attribution.attribute(pm, data, "eap").edge_scores.double()
    batch = data.batch(range(len(data)))
    nodes = torch.ones(pm.graph.num_writers)
    record = pm.ablation_record(batch.corrupted)
    full = pm.full_logits(batch.clean, positions=batch.positions)

    def m(edges):
        logits = pm(batch.clean, positions=batch.positions, edges=edges, nodes=nodes, record=record)
        return float(attribution._metric("logit_diff", data.task, logits, full, batch).mean())
    index = pm.graph.edge_index
    checked = [index[e] for e in (("embeds", "a1.h1.k"), ("a0.h2", "a1.h1.k"), ("a0.h3", "a1.h0.v"),
                                  ("m0", "a1.h1.v"), ("a0.h1", "resid_post"))]
    ones, h = torch.ones(pm.graph.num_edges, dtype=torch.float64), 1e-2

    def at(i, z):
        edges = ones.clone()
        edges[i] = z
        return m(edges)
    # a fourth-order central difference with a wide step: Llama's RMSNorm computes in float32 even
    # in a float64 model, so a narrow step would measure rounding
    for i in checked:
        slope = (8 * (at(i, 1 + h) - at(i, 1 - h)) - (at(i, 1 + 2 * h) - at(i, 1 - 2 * h))) / (12 * h)
        assert eap[i] == pytest.approx(slope, rel=1e-3, abs=2e-5)
    exact = attribution.attribute(pm, data, "exact").edge_scores.double()
    everything = m(ones)
    for i in checked:
        assert exact[i] == pytest.approx(everything - at(i, 0.0), rel=1e-9, abs=1e-12)
    # the record of eap-ig-inputs at alpha: the gated forward is the stock model on c + alpha (x - c)
    clean_rec = pm.record(batch.clean)
    rec = attribution._interpolated_record(pm, batch, clean_rec, record, 0.25)
    embed = model.get_input_embeddings()
    mixed = embed(batch.corrupted) + 0.25 * (embed(batch.clean) - embed(batch.corrupted))
    torch.testing.assert_close(pm(batch.clean, edges=ones, nodes=nodes, record=rec),
                               model(inputs_embeds=mixed).logits, rtol=0, atol=1e-10)
    for method in ("eap-ig-inputs", "eap-ig-activations", "eap-ig-gates", "clean-corrupted"):
        scores = attribution.attribute(pm, data, method, steps=2).edge_scores
        assert scores.shape == (pm.graph.num_edges,) and bool(torch.isfinite(scores).all())


def test_a_scored_circuit_saves_cuts_and_exports(gpt2, tmp_path):
    pm, _, data, *_ = gpt2
    scored = attribution.attribute(pm, data, "eap")
    scored.save(str(tmp_path / "eap"))
    back = edgeprune.Circuit.load(str(tmp_path / "eap"))
    assert back.score_kind == "score" and back.node_scores is None and back.config["method"] == "eap"
    torch.testing.assert_close(back.edge_scores, scored.edge_scores.float())
    top = back.at_edges(10)
    assert set(top.edges) == {pm.graph.edges[i] for i in scored.edge_scores.topk(10).indices.tolist()}
    assert back.to_mib(str(tmp_path / "mib.json"))


def test_bad_input():
    model = tiny("gpt2")
    pm = edgeprune.prunable(model)
    data = answer_data()[0]
    with pytest.raises(ValueError, match="unknown attribution method 'eap-ig'"):
        attribution.attribute(pm, data, "eap-ig")
    with pytest.raises(ValueError, match="no counterfactual answer"):
        attribution.attribute(pm, random_pairs(n=4), "eap")
    with pytest.raises(ValueError, match="steps must be at least 1"):
        attribution.attribute(pm, data, "eap-ig-inputs", steps=0)
    with pytest.raises(ValueError, match="needs ablation='corrupted'"):
        attribution.attribute(edgeprune.prunable(model, ablation="zero"), data, "eap-ig-inputs", ablation="zero")
    with pytest.raises(ValueError, match="exact_sets must be 0"):
        attribution.attribute(pm, data, "exact", exact_sets=-1)
    with pytest.raises(ValueError, match="built with ablation='corrupted'"):
        attribution.attribute(pm, data, "eap", ablation="mean")
