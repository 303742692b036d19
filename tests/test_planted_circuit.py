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
