"""Optimal ablation as Li and Janson define it (models/optimal_ablation.py) against a float64 reference written
from their rule with explicit per-edge sums: reader r's input at position s > 0 is
sum_w z_wr x_w + (1 - z_wr) c~_wr, where c~_wr is the constant c_w when z_wr < 1e-3 and c_w held
fixed (detached) otherwise; at the first position it is the clean run's input. The forward's
logits and the gradients of the constants (one per component, or per position) and of the gates
must match it. Also: the constants start at their means, the first position is never ablated,
and training the constants alone beats mean ablation."""
import pytest
import torch

import edgeprune
from edgeprune.models.forward import attend, attention_masks
from edgeprune.training import Trainer, prepare
from edgeprune.evaluation import evaluate_gates
from helpers.data import random_pairs
from helpers.models import tiny
from models.naive import attention_writers

CLOSED = 1e-3


def reference(pm, ids, constants: dict, edges, per_position: bool):
    """Logits of Li and Janson's pruned forward: GPT-2 (token and position embedding nodes), every node gate 1."""
    adapter, graph = pm.adapter, pm.graph
    B, S = ids.shape
    pos = torch.arange(S)[None].expand(B, -1)
    masks = attention_masks(adapter, None, S, ids.device)
    H = adapter.num_heads

    def const(name):
        t = constants[name].double()
        return t if per_position else t.expand(S, *t.shape)

    c = [const("embeds.0"), const("embeds.1")]
    for layer in range(graph.num_layers):
        w_o, b_o = adapter.output_projection(layer)
        c += [const(f"ctx.{layer}")[:, h] @ w_o[h] + b_o / H for h in range(H)] + [const(f"mlp.{layer}")]

    def run(gates, clean_inputs=None):
        """gates None: the clean run, whose reader inputs it returns in reading order."""
        x = list(adapter.embeddings(ids))
        seen = []

        def read(row, prefix):
            if gates is None:
                total = sum(x[:prefix])
            else:
                total = 0
                for w in range(prefix):
                    z = row[w]
                    held = c[w] if z < CLOSED else c[w].detach()
                    total = total + z * x[w] + (1 - z) * held
                total = torch.cat([clean_inputs[len(seen)][:, :1], total[:, 1:]], dim=1)  # never ablated
            seen.append(total)
            return total

        for layer in range(graph.num_layers):
            p = graph.attn_prefix(layer)
            start, stop = graph.attn_segment(layer)
            R = graph.attn_readers_per_layer
            g = None if gates is None else gates[start:stop].view(R, p)
            inputs = torch.stack([read(None if g is None else g[r], p) for r in range(R)])
            q, k, v = adapter.attention_inputs(layer, inputs, pos)
            x += attention_writers(adapter, graph, layer, attend(adapter, layer, q, k, v, masks))
            seg = graph.mlp_segment(layer)
            x.append(adapter.mlp(layer, read(None if gates is None else gates[seg.start:seg.stop], seg.cols)))
        seg = graph.final_segment
        final = read(None if gates is None else gates[seg.start:seg.stop], seg.cols)
        return adapter.unembed(final), seen

    _, clean_inputs = run(None)
    return run(edges, [t.detach() for t in clean_inputs])[0]


def random_constants(pm, per_position: bool, S: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a = pm.adapter
    lead = (S,) if per_position else ()
    shapes = {"embeds.0": lead + (a.d_model,), "embeds.1": lead + (a.d_model,)}
    for layer in range(a.num_layers):
        shapes |= {f"ctx.{layer}": lead + (a.num_heads, a.head_dim), f"mlp.{layer}": lead + (a.d_model,)}
    return {k: torch.randn(*shape, generator=g).float() for k, shape in shapes.items()}


@pytest.mark.parametrize("per_position", [False, True])
def test_forward_and_gradients_match_li_and_jansons_rule(per_position):
    model = tiny("gpt2").double()
    pm = edgeprune.prunable(model, ablation="optimal")
    data = random_pairs(n=3, seq=5)
    ids = data.batch(range(3)).clean
    tensors = random_constants(pm, per_position, ids.shape[1])
    pm.set_optimal_ablation(tensors)
    values = torch.tensor([0.0, 0.0005, 0.3, 1.0], dtype=torch.float64)
    pick = torch.randint(0, 4, (pm.graph.num_edges,), generator=torch.Generator().manual_seed(1))
    edges = values[pick].requires_grad_()
    nodes = torch.ones(pm.graph.num_writers, dtype=torch.float64)
    logits = pm(ids, edges=edges, nodes=nodes, record=pm.ablation_record(seq_len=ids.shape[1]))

    leaves = {k: v.double().requires_grad_() for k, v in tensors.items()}
    ref_edges = edges.detach().clone().requires_grad_()
    ref = reference(pm, ids, leaves, ref_edges, per_position)
    torch.testing.assert_close(logits, ref, rtol=1e-9, atol=1e-9)

    weights = torch.randn(ref.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    (logits * weights).sum().backward()
    (ref * weights).sum().backward()
    read = edges.detach() != 0   # the kernels give an unread writer's gates no gradient, by definition
    torch.testing.assert_close(edges.grad[read], ref_edges.grad[read], rtol=1e-8, atol=1e-10)
    ours = pm.constants.tensors()
    grads = {f"{name}.{i}": p.grad for name in ("embeds", "ctx", "mlp") for i, p in enumerate(getattr(pm.constants, name))}
    assert set(grads) == set(ours) == set(leaves)
    for name, leaf in leaves.items():
        assert float(leaf.grad.abs().max()) > 0 or name.startswith("ctx.0")  # something reaches them
        torch.testing.assert_close(grads[name].double(), leaf.grad, rtol=1e-5, atol=1e-9, msg=name)
    # an open edge passes no gradient: with every gate at 0.3 or more, the constants learn nothing
    pm.constants.zero_grad()
    open_edges = torch.where(edges.detach() < CLOSED, torch.full_like(edges, 0.3), edges.detach())
    logits = pm(ids, edges=open_edges, nodes=nodes, record=pm.ablation_record(seq_len=ids.shape[1]))
    (logits * weights).sum().backward()
    assert all(p.grad is None or float(p.grad.abs().max()) == 0 for p in pm.constants.parameters())


def test_the_first_position_is_never_ablated():
    model = tiny("gpt2")
    pm = edgeprune.prunable(model, ablation="optimal")
    data = random_pairs(n=4, seq=6)
    batch = data.batch(range(4))
    pm.set_mean_ablation(batch.clean, batch.attention_mask)
    closed = torch.zeros(pm.graph.num_edges), torch.ones(pm.graph.num_writers)
    with torch.no_grad():
        logits = pm(batch.clean, edges=closed[0], nodes=closed[1], record=pm.ablation_record(seq_len=6))
    full = pm.full_logits(batch.clean)
    torch.testing.assert_close(logits[:, 0], full[:, 0], rtol=1e-5, atol=1e-5)
    assert float((logits[:, 1:] - full[:, 1:]).abs().max()) > 1e-2      # the rest is ablated


def test_the_constants_start_at_their_means():
    model = tiny("gpt2")
    data = random_pairs(n=6, seq=5)
    batch = data.batch(range(6))
    mask = batch.attention_mask.clone()
    mask[2, 3:] = 0                                                         # padding is left out
    record = edgeprune.prunable(model).record(batch.clean, mask)
    for per_position in (False, True):
        pm = edgeprune.prunable(model, ablation="optimal")
        pm.set_mean_ablation(batch.clean, mask, per_position=per_position)
        assert pm.constants.per_position == per_position
        for name, t in (("mlp.1", record.mlp[1]), ("ctx.0", record.ctx[0]), ("embeds.0", record.embeds[0])):
            if per_position:
                want = t.double().mean(0)
            else:
                w = mask.double().clone()
                w[:, 0] = 0                                                  # the first position is never ablated
                w = w.view(6, 5, *[1] * (t.dim() - 2))
                want = (t.double() * w).sum((0, 1)) / w.sum()
            torch.testing.assert_close(pm.constants.tensors()[name].double(), want, rtol=1e-5, atol=1e-6)


def _closed_run(ablation, data, steps, **options):
    """Every edge gate closed and frozen (lr 0, log alpha -20): only optimal ablation's constants learn."""
    config = edgeprune.TrainConfig(edge_sparsity=0.5, steps=steps, batch_size=8, lr=0.0, lambda_lr=0.0,
                                   warmup_steps=0, ramp_steps=1, eval_every=0, ablation=ablation, weight_decay=0.0,
                                   **options)
    pm, dataset, _, _ = prepare(tiny("gpt2"), data, config)
    with torch.no_grad():
        pm.gates.edge_log_alpha.fill_(-20.0)
    trainer = Trainer(pm, dataset, config)
    for _ in range(steps):
        trainer.step()
    closed = (torch.zeros(pm.graph.num_edges), torch.ones(pm.graph.num_writers))
    return pm, evaluate_gates(pm, dataset, *closed)["kl"]


def test_training_the_constants_alone_beats_mean_ablation():
    """With every edge closed, each later position's output is nearly one distribution for all examples;
    the best is their mean distribution (the floor). Li and Janson's default (one constant per
    component, lr 2e-3) starts above mean ablation and ends below it, most of the way to the floor."""
    data = random_pairs(n=16)
    _, mean_kl = _closed_run("mean", data, steps=1)
    pm, start = _closed_run("optimal", data, steps=1)
    assert pm.constants.per_position is False and pm.constants.mlp[0].shape == (pm.adapter.d_model,)
    pm, trained = _closed_run("optimal", data, steps=60)
    batch = data.batch(range(len(data)))
    full = torch.log_softmax(pm.full_logits(batch.clean, positions=batch.positions)[:, 0].double(), -1)
    floor = float((full.exp() * (full - full.exp().mean(0).log())).sum(-1).mean())
    assert trained < mean_kl < start
    assert start - trained > 0.8 * (start - floor), (start, trained, floor)
    _, positional = _closed_run("optimal", data, steps=60, optimal_per_position=True)
    assert positional < mean_kl
