"""MIB's models (and Gemma 3, OLMo 2) at reduced size, every architectural switch as published.

For each: Hugging Face's logits (eager attention) with every edge kept, the corrupted run with every
edge pruned, fractional gates against the naive float64 forward (values and gradients), and a
planted circuit recovered by training. The models and the shrinking are in helpers/mib.py.
"""
import pytest
import torch

import edgeprune
from edgeprune.graph import num_edges
from edgeprune.training import TrainConfig, Trainer
from helpers import mib
from helpers.data import random_pairs
from helpers.models import gated
from models.naive import assert_matches_naive, naive_forward, writer_outputs

POST_NORM = ["google/gemma-2-2b", "google/gemma-3-1b-pt", "allenai/OLMo-2-0425-1B"]
CASES = [(name, "heads") for name in mib.NAMES] + [(name, "layer") for name in POST_NORM]


@pytest.mark.parametrize("name,writers", CASES)
def test_both_ends_exact(name, writers):
    """Every edge kept: Hugging Face's logits; every edge pruned: its logits on the corrupted input."""
    model = mib.shared(name)
    ids, cids = mib.ids()
    pm = edgeprune.prunable(model, embedding_nodes=1, attention_writers=writers)
    g = pm.graph
    assert g.num_edges == len(g.edges) == num_edges(g.num_layers, g.num_heads, 1, g.num_kv_heads,
                                                    attention_writers=writers)
    assert (gated(pm, ids, cids) - model(ids).logits).abs().max() < 1e-4
    assert (gated(pm, ids, cids, circuit=[]) - model(cids).logits).abs().max() < 1e-4
    default = edgeprune.prunable(model, attention_writers=writers)  # E = 2 for GPT-2, else 0 (clean embeddings)
    assert (gated(default, ids, cids) - model(ids).logits).abs().max() < 1e-4


@pytest.mark.parametrize("name", POST_NORM)
def test_bf16_error_within_hugging_faces_own(name):
    """In bf16 the shared scale is computed in fp32 and the norm's gain folded into W_O in bf16: the
    error against fp32 stays within a few times Hugging Face's own bf16 error."""
    ids, cids = mib.ids()
    model16 = mib.tiny(name, dtype=torch.bfloat16)
    with torch.no_grad():
        exact = mib.shared(name)(ids).logits
        ours = gated(edgeprune.prunable(model16), ids, cids).float()
        theirs = model16(ids).logits.float()
    assert (ours - exact).abs().max() <= 3 * (theirs - exact).abs().max() + 1e-3


def test_layer_kinds_as_published():
    """Gemma 2 alternates local and global layers; Gemma 3 has five local layers to a global one."""
    windows = {name: [edgeprune.prunable(mib.shared(name)).adapter.sliding_window(layer)
                      for layer in range(mib.SHRUNK[name][0])] for name in ("google/gemma-2-2b", "google/gemma-3-1b-pt")}
    assert windows == {"google/gemma-2-2b": [4, None], "google/gemma-3-1b-pt": [4] * 5 + [None]}
    assert mib.SEQ > mib.WINDOW


# Each switch that edgeprune applies itself (rather than through the model's own module), flipped:
# Hugging Face's logits then move far beyond the equality tolerance, so an adapter that ignored the
# switch would fail test_both_ends_exact.
SWITCHES = [("google/gemma-2-2b", {"attn_logit_softcapping": None}),
            ("google/gemma-2-2b", {"final_logit_softcapping": None}),
            ("google/gemma-2-2b", {"query_pre_attn_scalar": 8}),
            ("google/gemma-2-2b", {"sliding_window": 64}),
            ("google/gemma-3-1b-pt", {"sliding_window": 64}),
            ("google/gemma-3-1b-pt", {"rope_local_base_freq": 1000000}),
            ("meta-llama/Llama-3.1-8B", {"rope_scaling": None})]


@pytest.mark.parametrize("name,flip", SWITCHES)
def test_switch_matters_at_this_size(name, flip):
    ids, _ = mib.ids()
    with torch.no_grad():
        moved = (mib.shared(name)(ids).logits - mib.tiny(name, **flip)(ids).logits).abs().max()
    assert moved > 1e-3


@pytest.mark.parametrize("name,writers", [(name, "heads") for name in mib.NAMES] + [("google/gemma-2-2b", "layer")])
def test_fractional_gates_match_naive_float64(name, writers):
    model = mib.shared(name, torch.float64)
    pm = edgeprune.prunable(model, embedding_nodes=1, attention_writers=writers)
    graph, adapter = pm.graph, pm.adapter
    ids, cids = mib.ids()
    g = torch.Generator().manual_seed(3)
    edges = torch.rand(graph.num_edges, generator=g, dtype=torch.float64).requires_grad_()
    nodes = torch.rand(graph.num_writers, generator=g, dtype=torch.float64).requires_grad_()
    out = pm(ids, edges=edges, nodes=nodes, record=pm.record(cids))
    ref = naive_forward(adapter, graph, ids, writer_outputs(adapter, graph, cids)[0], edges, nodes)
    assert_matches_naive(out, ref, edges, nodes)


@pytest.mark.parametrize("ablation", ["zero", "mean"])
def test_one_writer_per_layer_under_zero_and_mean_ablation(ablation):
    """GPT-2's output bias: the layer's writer carries all of b_O under zero ablation (none cancels)."""
    model = mib.shared("openai-community/gpt2", torch.float64)
    pm = edgeprune.prunable(model, embedding_nodes=1, ablation=ablation, attention_writers="layer")
    graph, adapter = pm.graph, pm.adapter
    ids, others = mib.ids()
    if ablation == "zero":
        record, ablated = None, [torch.zeros(()) for _ in range(graph.num_writers)]
    else:
        pm.set_mean_ablation(others)
        record = pm.mean_record
        ablated = [w.mean(0, keepdim=True) for w in writer_outputs(adapter, graph, others)[0]]
    g = torch.Generator().manual_seed(5)
    edges = torch.rand(graph.num_edges, generator=g, dtype=torch.float64)
    nodes = torch.rand(graph.num_writers, generator=g, dtype=torch.float64)
    torch.testing.assert_close(pm(ids, edges=edges, nodes=nodes, record=record),
                               naive_forward(adapter, graph, ids, ablated, edges, nodes), rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------------------------ planted circuits

@torch.no_grad()
def plant(model, gain=4.0):
    """Only head 0 of layer 0 and the MLP of layer 1 write anything that differs between two inputs.

    Every other head's output projection and layer 0's MLP output are zeroed. Where a norm spans all
    heads' queries or keys (OLMo 2), the other heads of layer 0 also get zero query and key
    projections, so that head 0's inputs depend on its own readers only.
    """
    if model.config.model_type == "gpt2":
        blocks = model.transformer.h
        D, H = model.config.n_embd, model.config.n_head
        for layer, block in enumerate(blocks[:2]):
            block.attn.c_proj.weight.view(H, D // H, D)[1 if layer == 0 else 0:] = 0
        blocks[0].mlp.c_proj.weight.zero_()
        blocks[0].mlp.c_proj.bias.zero_()
        for w in (blocks[0].attn.c_attn.weight, blocks[0].attn.c_proj.weight, blocks[1].mlp.c_fc.weight,
                  blocks[1].mlp.c_proj.weight):
            w.mul_(gain)
        model.transformer.wte.weight.mul_(3)
        return
    blocks, cfg = model.model.layers, model.config
    H, K = cfg.num_attention_heads, cfg.num_key_value_heads
    dh = getattr(cfg, "head_dim", None) or cfg.hidden_size // H
    for layer, block in enumerate(blocks[:2]):
        block.self_attn.o_proj.weight.view(cfg.hidden_size, H, dh)[:, 1 if layer == 0 else 0:] = 0
    blocks[0].mlp.down_proj.weight.zero_()
    attn = blocks[0].self_attn
    if cfg.model_type == "olmo2":
        attn.q_proj.weight.view(H, dh, -1)[1:] = 0
        attn.k_proj.weight.view(K, dh, -1)[1:] = 0
    if cfg.model_type == "gemma3_text":  # per-head q/k norms: their gains (1 + weight) set the logits' scale
        attn.q_norm.weight.add_(3)
        attn.k_norm.weight.add_(3)
    for proj in (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, blocks[1].mlp.gate_proj,
                 blocks[1].mlp.up_proj, blocks[1].mlp.down_proj):
        proj.weight.mul_(gain)
    model.model.embed_tokens.weight.mul_(3)
    if not cfg.tie_word_embeddings:
        model.model.embed_tokens.weight.mul_(3)
        model.lm_head.weight.mul_(20)


@pytest.mark.parametrize("name,writers", [(name, "heads") for name in mib.NAMES] + [("google/gemma-2-2b", "layer")])
def test_planted_circuit_recovered(name, writers):
    """The 8 planted edges, and no other, from a target two edges sparser than the planted answer.

    Two layers (Gemma 3's are then both local); the schedule is short (200 steps), the learning rate
    high, so that the seven cases stay fast.
    """
    model = mib.tiny(name, num_hidden_layers=2) if name != "openai-community/gpt2" else mib.tiny(name)
    found, planted, kl = recover_planted(model, writers)
    assert found == planted
    assert kl < 1e-5


def recover_planted(model, writers):
    """Plant the circuit in `model` and train towards it: (edges found, the 8 planted edges, the
    found circuit's KL)."""
    plant(model)
    pm = edgeprune.prunable(model, embedding_nodes=1, attention_writers=writers)
    head = "a0.h0" if writers == "heads" else "a0"
    planted = {("embeds", "a0.h0.q"), ("embeds", "a0.h0.k"), ("embeds", "a0.h0.v"), ("embeds", "m1"),
               ("embeds", "resid_post"), (head, "m1"), (head, "resid_post"), ("m1", "resid_post")}
    config = TrainConfig(edge_sparsity=round(1 - (len(planted) - 2) / pm.graph.num_edges, 4), steps=200, batch_size=8,
                         lr=1.2, lambda_lr=0.005, warmup_steps=20, ramp_steps=100, eval_every=0, recompute_readers=False)
    data = random_pairs(n=16, seq=6)
    circuit = Trainer(pm, data, config).run(progress=False)
    return set(circuit.edges), planted, edgeprune.evaluate(pm, circuit, data)["kl"]
