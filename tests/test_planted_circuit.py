"""Planted circuits: weights edited so that exactly a known set of edges matters; train() finds it.

In each 2-layer model only head 0 of layer 0 and the MLP of layer 1 write anything that differs
between clean and corrupted inputs (every other head's output projection and layer 0's MLP output
are zeroed, and positions are the same in both runs). So an edge matters exactly when its writer
differs (the token embeddings, a0.h0, m1) and its reader feeds the output (a0.h0's q/k/v, m1,
resid_post): 8 edges, q/k/v and MLP edges among them. The path's weights and the unembedding are
scaled up so that every one of the 8 carries a clear KL cost. The target sparsity is 0.01 above
the planted answer (GPT-2: 0.942 of 137 edges; Llama with GQA: 0.902 of 82; GPT-NeoX, parallel
residual: 0.922 of 102), not equal to it.
"""
import pytest
import torch

import edgeprune
from edgeprune.training import TrainConfig, Trainer
from helpers.data import random_pairs
from helpers.models import tiny

PLANTED = {("{emb}", "a0.h0.q"), ("{emb}", "a0.h0.k"), ("{emb}", "a0.h0.v"), ("{emb}", "m1"),
           ("{emb}", "resid_post"), ("a0.h0", "m1"), ("a0.h0", "resid_post"), ("m1", "resid_post")}


@torch.no_grad()
def _plant_gpt2(model, gain=8.0):
    t, dh = model.transformer, 8
    for layer in range(2):
        w_o = t.h[layer].attn.c_proj.weight.view(4, dh, 32)
        w_o[1 if layer == 0 else 0:] = 0
    t.h[0].mlp.c_proj.weight.zero_()
    t.h[0].mlp.c_proj.bias.zero_()
    t.h[0].attn.c_attn.weight.mul_(gain)
    t.h[0].attn.c_proj.weight.mul_(gain)
    t.h[1].mlp.c_fc.weight.mul_(gain)
    t.h[1].mlp.c_proj.weight.mul_(gain)
    t.wte.weight.mul_(3)
    model.lm_head.weight.mul_(20)


@torch.no_grad()
def _plant_llama(model, gain=8.0):
    layers, dh = model.model.layers, 8
    for layer in range(2):
        w_o = layers[layer].self_attn.o_proj.weight.view(32, 4, dh)
        w_o[:, 1 if layer == 0 else 0:] = 0
    layers[0].mlp.down_proj.weight.zero_()
    attn = layers[0].self_attn
    for proj in (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj):
        proj.weight.mul_(gain)
    for proj in (layers[1].mlp.gate_proj, layers[1].mlp.up_proj, layers[1].mlp.down_proj):
        proj.weight.mul_(gain)
    model.model.embed_tokens.weight.mul_(3)
    model.lm_head.weight.mul_(20)


@torch.no_grad()
def _plant_gpt_neox(model, gain=8.0):
    """Pythia's parallel residual: a0.h0 -> m1 is still an edge (m1 reads all of layer 0)."""
    layers, dh = model.gpt_neox.layers, 8
    for layer in range(2):
        w_o = layers[layer].attention.dense.weight.view(32, 4, dh)
        w_o[:, 1 if layer == 0 else 0:] = 0
    layers[0].mlp.dense_4h_to_h.weight.zero_()
    layers[0].mlp.dense_4h_to_h.bias.zero_()
    layers[0].attention.query_key_value.weight.mul_(gain)
    layers[0].attention.dense.weight.mul_(gain)
    layers[1].mlp.dense_h_to_4h.weight.mul_(gain)
    layers[1].mlp.dense_4h_to_h.weight.mul_(gain)
    model.gpt_neox.embed_in.weight.mul_(3)
    model.lm_head.weight.mul_(20)


@pytest.mark.parametrize("family,embedding_nodes,plant", [("gpt2", 2, _plant_gpt2), ("llama", 1, _plant_llama),
                                                          ("gpt_neox", 1, _plant_gpt_neox)])
def test_train_recovers_planted_circuit(family, embedding_nodes, plant):
    model = tiny(family, layers=2, tie_word_embeddings=False)
    plant(model)
    pm = edgeprune.prunable(model, embedding_nodes=embedding_nodes)
    emb = "tok_embeds" if embedding_nodes == 2 else "embeds"
    planted = {(w.format(emb=emb), r) for w, r in PLANTED}
    answer = 1 - len(planted) / pm.graph.num_edges
    config = TrainConfig(edge_sparsity=round(answer + 0.01, 3), steps=500, batch_size=16, lr=0.8, lambda_lr=0.005, warmup_steps=50,
                         ramp_steps=250, eval_every=0)
    data = random_pairs(n=16, seq=6)
    circuit = Trainer(pm, data, config).run(progress=False)
    assert set(circuit.edges) == planted
    metrics = edgeprune.evaluate(pm, circuit, data)
    assert metrics["kl"] < 1e-5
    # and the planted set matters: dropping any one of its edges costs KL
    weakest = min(edgeprune.evaluate(pm, circuit.__class__(circuit.graph, sorted(planted - {e}), circuit.nodes),
                                     data)["kl"] for e in planted)
    assert weakest > 1e-3


@pytest.mark.parametrize("mode,target,node_target", [
    ("corrupted", 0.935, None),   # the planted answer keeps 8 of 137 edges: sparsity 0.9416
    ("corrupted", 0.935, 0.745),  # with the node loss: 3 of 12 writers needed, node sparsity 0.75
    ("zero", 0.915, None),        # zeroed writers also cost KL: 11 edges are needed, sparsity 0.9197
    ("mean", 0.935, None),
])
def test_learning_from_gates_that_move(mode, target, node_target):
    """Log alphas start at N(1, 0.5^2), where a sampled gate is 0 or fractional a third of the time,
    so the loss, not the initialisation, decides the circuit: the sparsity ends within 0.01 of the
    target and the kept edges contain the planted ones."""
    model = tiny("gpt2", layers=2, tie_word_embeddings=False)
    _plant_gpt2(model)
    pm = edgeprune.prunable(model, embedding_nodes=2, ablation=mode)
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        for p in pm.gates.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5 + 1.0)
    data = random_pairs(n=16, seq=6)
    if mode == "mean":
        batch = data.batch(list(range(len(data))))
        pm.set_mean_ablation(batch.clean, batch.attention_mask)
    config = TrainConfig(edge_sparsity=target, node_sparsity=node_target, steps=300, batch_size=16, lr=0.1,
                         lambda_lr=0.05, warmup_steps=30, ramp_steps=150, eval_every=0)
    circuit = Trainer(pm, data, config).run(progress=False)
    assert abs(circuit.edge_sparsity - target) < 0.01
    if node_target is not None:
        assert abs(circuit.node_sparsity - node_target) < 0.01
    assert {(w.format(emb="tok_embeds"), r) for w, r in PLANTED} <= set(circuit.edges)
