"""The two graphs for models with a norm on the attention's output, measured on tiny random models.

    PYTHONPATH=python:tests python benchmarks/post_norm_designs.py

For Gemma 2, Gemma 3 and OLMo 2 at the reduced sizes of tests/helpers/mib.py, with attention
writers per head (design a, the default) and one per layer (design b): the edge count; the largest
logit difference with every edge kept (against Hugging Face's eager fp32 logits) and with every
edge pruned (against its logits on the corrupted input); fractional gates against the naive
float64 forward (logits and gate gradients); whether training recovers the planted circuit of
tests/models/test_mib_configs.py and its KL. Under (a) it also reports how far the shared norm
scale carries one head's corruption into the other heads' writes: every edge into head 1 of layer 0
pruned, the largest change of another head's write relative to that head's write. docs/design.md
("Norms on the branch outputs") quotes the figures.
"""
from __future__ import annotations

import torch

import edgeprune
from helpers import mib
from helpers.models import gated
from models.naive import naive_forward, writer_outputs
from models.test_mib_configs import recover_planted

NAMES = ["google/gemma-2-2b", "google/gemma-3-1b-pt", "allenai/OLMo-2-0425-1B"]


def ends(name, writers):
    model = mib.shared(name)
    ids, cids = mib.ids()
    pm = edgeprune.prunable(model, embedding_nodes=1, attention_writers=writers)
    with torch.no_grad():
        kept = (gated(pm, ids, cids) - model(ids).logits).abs().max().item()
        pruned = (gated(pm, ids, cids, circuit=[]) - model(cids).logits).abs().max().item()
    return pm.graph.num_edges, kept, pruned


def fractional(name, writers):
    model = mib.shared(name, torch.float64)
    pm = edgeprune.prunable(model, embedding_nodes=1, attention_writers=writers)
    ids, cids = mib.ids()
    g = torch.Generator().manual_seed(3)
    edges = torch.rand(pm.graph.num_edges, generator=g, dtype=torch.float64).requires_grad_()
    nodes = torch.rand(pm.graph.num_writers, generator=g, dtype=torch.float64).requires_grad_()
    out = pm(ids, edges=edges, nodes=nodes, record=pm.record(cids))
    ref = naive_forward(pm.adapter, pm.graph, ids, writer_outputs(pm.adapter, pm.graph, cids)[0], edges, nodes)
    got = torch.autograd.grad(out.sum(), edges)[0]
    want = torch.autograd.grad(ref.sum(), edges)[0]
    return (out - ref).abs().max().item(), (got - want).abs().max().item()


def planted(name, writers):
    found, want, kl = recover_planted(mib.tiny(name, num_hidden_layers=2), writers)
    return found == want, kl


@torch.no_grad()
def shared_scale_reach(name):
    """Prune every edge into head 1 of layer 0: how much the other heads' writes move (relative)."""
    model = mib.shared(name)
    pm = edgeprune.prunable(model, embedding_nodes=1)
    ids, cids = mib.ids()
    g = pm.graph
    cut = [e for e in g.edges if not e[1].startswith("a0.h1.")]
    if g.num_kv_heads < g.num_heads:  # a key/value reader is shared by its group: cut only the query
        cut = [e for e in g.edges if e[1] != "a0.h1.q"]
    record = pm.record(cids)

    def writes(edges):
        out = {}
        original = pm.adapter.head_contexts

        def spy(layer, ctx):
            scaled = original(layer, ctx)
            if layer == 0:
                out["ctx"] = scaled
            return scaled
        pm.adapter.head_contexts = spy
        try:
            pm(ids, edges=pm.circuit_gates(edges)[0], nodes=torch.ones(g.num_writers), record=record)
        finally:
            del pm.adapter.head_contexts
        w_o, _ = pm.adapter.output_projection(0)
        return torch.einsum("bshe,hed->hbsd", out["ctx"], w_o)

    full, partial = writes(None), writes(cut)
    others = [h for h in range(g.num_heads) if h != 1]
    change = (partial[others] - full[others]).norm(dim=-1) / full[others].norm(dim=-1)
    return change.max().item()


def main():
    print("| model | attention writers | edges | all kept vs HF | all pruned vs corrupted run | fractional vs float64 "
          "(logits, gate gradients) | planted circuit recovered (KL) |")
    print("|---|---|---|---|---|---|---|")
    for name in NAMES:
        for writers in ("heads", "layer"):
            n, kept, pruned = ends(name, writers)
            f_out, f_grad = fractional(name, writers)
            ok, kl = planted(name, writers)
            print(f"| {name.split('/')[1]} | {writers} | {n} | {kept:.1e} | {pruned:.1e} | {f_out:.0e}, {f_grad:.0e} | "
                  f"{'yes' if ok else 'NO'} ({kl:.0e}) |")
    for name in NAMES:
        print(f"{name}: one head's inputs corrupted moves the other heads' writes by up to "
              f"{shared_scale_reach(name):.1%} (relative)")


if __name__ == "__main__":
    main()
