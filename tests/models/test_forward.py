"""The gated forward against Hugging Face (all gates on / all edges off) and a naive float64 forward."""
import pytest
import torch

import edgeprune
from helpers.models import VOCAB, gated, tiny
from models.naive import assert_matches_naive, naive_forward, writer_outputs

FAMILIES = ["gpt2", "llama", "mistral", "qwen2", "qwen3", "gpt_neox"]


def _ids(b=3, s=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(2, VOCAB, (b, s), generator=g), torch.randint(2, VOCAB, (b, s), generator=g)


@pytest.mark.parametrize("family", FAMILIES)
def test_all_gates_on_equals_hf(family):
    model = tiny(family)
    ids, cids = _ids()
    hf = model(ids).logits
    for e in edgeprune.prunable(model).adapter.embedding_nodes_allowed:
        pm = edgeprune.prunable(model, embedding_nodes=e)
        assert (gated(pm, ids, cids) - hf).abs().max() < 1e-4


def test_gpt_neox_sequential_residual_equals_hf():
    """use_parallel_residual=False (GPT-NeoX's other layout): the MLP reads attention's output again."""
    model = tiny("gpt_neox", use_parallel_residual=False)
    ids, cids = _ids()
    pm = edgeprune.prunable(model, embedding_nodes=1)
    assert not pm.graph.parallel and ("a1.h0", "m1") in pm.graph.edge_index
    assert (gated(pm, ids, cids) - model(ids).logits).abs().max() < 1e-4
    assert (gated(pm, ids, cids, circuit=[]) - model(cids).logits).abs().max() < 1e-4


def test_gpt_neox_without_attention_biases_equals_hf():
    model = tiny("gpt_neox", attention_bias=False)
    assert model.gpt_neox.layers[0].attention.query_key_value.bias is None
    ids, cids = _ids()
    pm = edgeprune.prunable(model, embedding_nodes=1)
    assert (gated(pm, ids, cids) - model(ids).logits).abs().max() < 1e-4


# Sliding windows shorter than the 7-token inputs: in every layer (Mistral), in the layers past
# max_window_layers (Qwen2: layer 0 full, layer 1 windowed), and absent from the HF-equality above.
WINDOWED = [("mistral", {"sliding_window": 3}),
            ("qwen2", {"use_sliding_window": True, "sliding_window": 3, "max_window_layers": 1})]


@pytest.mark.parametrize("family,config", WINDOWED)
def test_sliding_windows_per_layer_equal_hf(family, config):
    model = tiny(family, **config)
    ids, cids = _ids()
    pm = edgeprune.prunable(model, embedding_nodes=1)
    assert [pm.adapter.sliding_window(layer) for layer in range(2)] == \
        ([3, 3] if family == "mistral" else [None, 3])
    assert (gated(pm, ids, cids) - model(ids).logits).abs().max() < 1e-4
    assert (gated(pm, ids, cids, circuit=[]) - model(cids).logits).abs().max() < 1e-4
    # the window matters here: the same model without it computes something else
    assert (tiny(family)(ids).logits - model(ids).logits).abs().max() > 1e-3


@pytest.mark.parametrize("family", FAMILIES)
def test_all_edges_off_equals_corrupted_run(family):
    model = tiny(family)
    ids, cids = _ids()
    pm = edgeprune.prunable(model, embedding_nodes=1)
    assert (gated(pm, ids, cids, circuit=[]) - model(cids).logits).abs().max() < 1e-4


CASES = [("gpt2", e, a) for e in (0, 1, 2) for a in ("corrupted", "zero", "mean")] + \
        [("llama", e, a) for e in (0, 1) for a in ("corrupted", "zero", "mean")] + [("qwen3", 1, "corrupted")] + \
        [("gpt_neox", e, a) for e, a in ((0, "zero"), (1, "corrupted"), (1, "mean"))]


@pytest.mark.parametrize("family,embedding_nodes,ablation", CASES)
def test_fractional_gates_match_naive_float64(family, embedding_nodes, ablation):
    model = tiny(family, dtype=torch.float64)
    pm = edgeprune.prunable(model, embedding_nodes=embedding_nodes, ablation=ablation)
    graph, adapter = pm.graph, pm.adapter
    ids, cids = _ids(b=2, s=5)
    mean_ids = _ids(b=4, s=5, seed=7)[0]
    g = torch.Generator().manual_seed(3)
    edges = torch.rand(graph.num_edges, generator=g, dtype=torch.float64).requires_grad_()
    nodes = torch.rand(graph.num_writers, generator=g, dtype=torch.float64).requires_grad_()

    if ablation == "corrupted":
        record = pm.record(cids)
        ablated = writer_outputs(adapter, graph, cids)[0]
    elif ablation == "zero":
        record, ablated = None, [torch.zeros(()) for _ in range(graph.num_writers)]
    else:
        pm.set_mean_ablation(mean_ids, batch_size=3)
        record = pm.mean_record
        ablated = [w.mean(0, keepdim=True) for w in writer_outputs(adapter, graph, mean_ids)[0]]

    out = pm(ids, edges=edges, nodes=nodes, record=record)
    ref = naive_forward(adapter, graph, ids, ablated, edges, nodes)
    assert_matches_naive(out, ref, edges, nodes)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_no_grad_bf16_and_right_padding(family):
    model = tiny(family)
    ids, cids = _ids(b=2, s=6)
    pm = edgeprune.prunable(model)
    gates = pm.gates.deterministic()
    with torch.no_grad():
        reference = gated(pm, ids, cids, gates=gates)
    out = gated(pm, ids, cids, gates=gates)
    torch.testing.assert_close(out.detach(), reference)

    # right padding with an attention mask: real positions are unchanged
    pad = torch.full((2, 3), 1)
    mask = torch.cat([torch.ones(2, 6, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long)], 1)
    with torch.no_grad():
        padded = gated(pm, torch.cat([ids, pad], 1), torch.cat([cids, pad], 1), attention_mask=mask, gates=gates)
    torch.testing.assert_close(padded[:, :6], reference, rtol=1e-5, atol=1e-5)

    # bf16: the error against fp32 is within a few times HF's own bf16 error
    hf32 = model(ids).logits
    model16 = tiny(family, dtype=torch.bfloat16)
    pm16 = edgeprune.prunable(model16)
    with torch.no_grad():
        ours = gated(pm16, ids, cids).float()
        theirs = model16(ids).logits.float()
    assert ours.dtype == torch.float32 and torch.isfinite(ours).all()
    assert (ours - hf32).abs().max() <= 3 * (theirs - hf32).abs().max() + 1e-3
