"""EAP-IG-activations (the EAP-IG package's definition, edgeprune.node_groups): the completeness that
its integration approaches. For each node group g, the scores its own runs give g's outgoing edges
sum to the integral of dm/d(g's output) . (x_g - c_g) along g's path, which is m(clean) - m(g's
output patched); the right Riemann sum over k = 1 .. n converges as 1/n, so Richardson's
2 S(2n) - S(n) must match to second order. The patched run is measured independently: on GPT-2 with
PyTorch hooks on the stock model, on the parallel-residual GPT-NeoX by closing g's outgoing gates.
The package's scores themselves are checked edge by edge against the hooked float64 reference in
tests/test_attribution.py."""
import pytest
import torch

import edgeprune
import edgeprune.attribution as attribution
from edgeprune.node_groups import group_gradients, node_groups
from helpers.models import tiny
from helpers.naive_attribution import HookedGPT2, logit_diff
from test_attribution import answer_data


def _metric_and_gradient(pm, data):
    batch = data.batch(range(len(data)))
    record = pm.ablation_record(batch.corrupted, batch.attention_mask, batch.clean.shape[1])
    full = pm.full_logits(batch.clean, batch.attention_mask, batch.positions)
    nodes = torch.ones(pm.graph.num_writers, dtype=torch.float64)

    def m(edges, rec, grad):
        with torch.set_grad_enabled(grad):
            logits = pm(batch.clean, batch.attention_mask, batch.positions, edges=edges, nodes=nodes, record=rec)
            values = attribution._metric("logit_diff", data.task, logits, full, batch)
        if not grad:
            return values
        (gradient,) = torch.autograd.grad(values.sum(), edges)
        return gradient.double()
    return batch, record, m


def _integrals(pm, data, n=6):
    """Per group: Richardson's extrapolation of its outgoing edges' summed scores (summed over examples)."""
    batch, record, m = _metric_and_gradient(pm, data)
    clean = pm.record(batch.clean, batch.attention_mask)
    ones = torch.ones(pm.graph.num_edges, dtype=torch.float64)
    writer = pm.graph.edge_writer_indices()
    out = {}
    for group in node_groups(pm.graph):
        mine = torch.isin(writer, torch.tensor(group.writers))
        s = [float(group_gradients(pm, m, batch, clean, record, group, k, ones)[mine].sum()) / k for k in (n, 2 * n)]
        out[group.name] = (2 * s[1] - s[0], mine)
    return out, m, record


def test_each_group_integrates_to_its_patching_effect_on_gpt2():
    model = tiny("gpt2").double()
    data, clean, corrupted, positions, answers, distractors = answer_data()
    pm = edgeprune.prunable(model)
    integrals, *_ = _integrals(pm, data)
    hooked, metric = HookedGPT2(model), logit_diff(positions, answers, distractors)
    _, cor = hooked.run(corrupted)
    full = float(metric(hooked.run(clean)[0]).sum())
    patched = {"input": hooked.run(clean, embed_tok=cor["writers"]["tok_embeds"])[0]}
    for layer in range(hooked.L):
        for kind, name in (("attn", f"a{layer}"), ("mlp", f"m{layer}")):
            patched[name] = hooked.run(clean, outputs={(kind, layer): cor["outputs"][(kind, layer)]})[0]
    assert set(integrals) == set(patched) and len(patched) == 5
    for name, (integral, _) in integrals.items():
        effect = full - float(metric(patched[name]).sum())
        assert abs(effect) > 1e-2
        assert integral == pytest.approx(effect, rel=1e-2), name


def test_each_group_integrates_to_its_patching_effect_with_a_parallel_residual():
    pm = edgeprune.prunable(tiny("gpt_neox").double(), embedding_nodes=1)
    data = answer_data()[0]
    integrals, m, record = _integrals(pm, data)
    ones = torch.ones(pm.graph.num_edges, dtype=torch.float64)
    for name, (integral, mine) in integrals.items():
        effect = float((m(ones, record, False) - m(torch.where(mine, 0.0, ones), record, False)).sum())
        assert abs(effect) > 1e-3
        assert integral == pytest.approx(effect, rel=2e-2), name
