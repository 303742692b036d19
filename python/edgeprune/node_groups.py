"""EAP-IG-activations as the EAP-IG package defines it: integrated gradients along one node group at a time.

The groups are MIB's forward nodes taken layer by layer: the input (the embeddings), each layer's
attention (all its heads) and each layer's MLP. For each group g and k = 1 .. steps, the clean
input runs with g's output replaced by the fixed c_g + a (x_g - c_g), a = k / steps (x the clean
run's value, c the ablated one), everything after it recomputed and nothing flowing back through
g. Every edge (w -> r) adds (x_w - c_w) . dm/d in_r of that run, its clean-minus-ablated delta
fixed; the scores are the mean over all groups and steps (edgeprune.attribution, docs/method.md 11.1).

Each run is one gated forward of the clean input under a constructed record: with R the record of
a plain run with g replaced, the heads', MLPs' and embeddings' values are c'_w = R_w - (x_w - c_w)
(so each delta is the clean one), g's own are c_g, and the bases are R's residual streams shifted by
the clean-minus-ablated streams: every reader after g then sees R. g's own readers get every gate
0 and the clean stream as their base, so g computes its clean output from constants and no gradient
reaches anything before g through g; the edges into g's readers score 0, as in the package (g's
fixed output takes no gradient from its inputs). Closing g's outgoing gates instead would not do:
the kernels give a writer that no reader reads a zero gate gradient.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from .models import PrunableModel, WriterRecord
from .models.forward import _plain_layer, attention_masks, position_ids, record_writers


@dataclass(frozen=True)
class NodeGroup:
    """A group of writers interpolated together: kind "input", "attn" or "mlp", its layer (-1: input)."""
    kind: str
    layer: int
    writers: tuple[int, ...]   # the graph's writer indices (none for the input without embedding nodes)

    @property
    def name(self) -> str:
        return "input" if self.kind == "input" else f"{'a' if self.kind == 'attn' else 'm'}{self.layer}"


def node_groups(graph) -> list[NodeGroup]:
    """MIB's forward nodes as the EAP-IG package interpolates them: input, then per layer attention, MLP."""
    groups = [NodeGroup("input", -1, tuple(range(graph.embedding_nodes)))]
    for layer in range(graph.num_layers):
        first = graph.head_writer(layer, 0)
        groups.append(NodeGroup("attn", layer, tuple(range(first, first + graph.attn_writers_per_layer))))
        groups.append(NodeGroup("mlp", layer, (graph.mlp_writer(layer),)))
    return groups


def incoming(graph, group: NodeGroup) -> torch.Tensor:
    """A bool mask over the graph's edges: those into the group's readers (none for the input)."""
    mask = torch.zeros(graph.num_edges, dtype=torch.bool)
    if group.kind == "attn":
        mask[slice(*graph.attn_segment(group.layer))] = True
    elif group.kind == "mlp":
        segment = graph.mlp_segment(group.layer)
        mask[segment.start:segment.stop] = True
    return mask


def group_gradients(pm: PrunableModel, m, batch, clean: WriterRecord, ablated: WriterRecord, group: NodeGroup,
                    steps: int, ones: torch.Tensor) -> torch.Tensor:
    """The sum over k = 1 .. steps of every edge's (x_w - c_w) . dm/d in_r with `group` at a = k / steps.

    m(edges, record, grad=True) is attribution's metric: the gradient of the summed metric with
    respect to the leaf edge gates, float64.
    """
    closed = incoming(pm.graph, group).to(ones.device)
    gates = torch.where(closed, torch.zeros_like(ones), ones)
    total = 0
    for k in range(1, steps + 1):
        run = patched_run(pm, batch, clean, ablated, group, k / steps)
        total = total + m(gates.clone().requires_grad_(), group_record(pm, clean, ablated, run, group), True)
    return torch.where(closed, torch.zeros_like(total), total)


def _mix(x: torch.Tensor, c: torch.Tensor, alpha: float) -> torch.Tensor:
    return c + alpha * (x - c)


@torch.no_grad()
def patched_run(pm: PrunableModel, batch, clean: WriterRecord, ablated: WriterRecord, group: NodeGroup,
                alpha: float) -> WriterRecord:
    """The record of the plain clean run with `group`'s output fixed at c + alpha (x - c)."""
    if group.kind == "input":
        embeds = [_mix(x, c, alpha) for x, c in zip(clean.embeds, ablated.embeds)]
        return record_writers(pm.adapter, batch.clean, batch.attention_mask, pm.layer_runner, embeds=embeds)
    return pm.layer_runner.run_model(_patched_layers, pm, batch, clean, ablated, group, alpha)


def _patched_layers(pm, batch, clean, ablated, group, alpha) -> WriterRecord:
    """Layers before the group's are the clean run's; its layer runs with the group replaced, then the rest."""
    adapter, runner, layer = pm.adapter, pm.layer_runner, group.layer
    masks = attention_masks(adapter, batch.attention_mask, batch.clean.shape[1], batch.clean.device)
    pos = position_ids(batch.clean)
    ctxs, mlps = list(clean.ctx[:layer]), list(clean.mlp[:layer])
    pres, mids = list(clean.resid_pre[:layer]), list(clean.resid_mid[:layer])
    resid = clean.resid_pre[layer]
    ctx = clean.ctx[layer] if group.kind == "mlp" else _mix(clean.ctx[layer], ablated.ctx[layer], alpha)
    attn = _attention_output(adapter, layer, ctx)
    mid = resid if adapter.parallel_residual else resid + attn
    out = _mix(clean.mlp[layer], ablated.mlp[layer], alpha) if group.kind == "mlp" else adapter.mlp(layer, mid)
    pres.append(resid), mids.append(mid), ctxs.append(ctx.expand_as(clean.ctx[layer])), mlps.append(out)
    resid = resid + attn + out
    for later in range(layer + 1, adapter.num_layers):
        pres.append(resid)
        ctx, attn, mid, out = runner.run_layer(later, partial(_plain_layer, adapter, later, pos, masks), resid)
        mids.append(mid)
        resid = resid + attn + out
        ctxs.append(ctx)
        mlps.append(out)
    return WriterRecord(list(clean.embeds), ctxs, mlps, pres, mids, resid)


def _attention_output(adapter, layer: int, ctx: torch.Tensor) -> torch.Tensor:
    """A layer's attention output from its head contexts (as the plain forward computes it)."""
    w_o, b_o = adapter.output_projection(layer)
    attn = ctx.flatten(2) @ w_o.flatten(0, 1)
    return attn if b_o is None else attn + b_o


def group_record(pm: PrunableModel, clean: WriterRecord, ablated: WriterRecord, run: WriterRecord,
                 group: NodeGroup) -> WriterRecord:
    """The record under which the gated forward of the clean input, the gates into the group's readers
    at 0 and every other at 1, reads `run` at every reader after the group and the clean stream at
    the group's own readers, while each delta x_w - c_w stays the clean one."""
    def values(name):
        out = []
        for i, (r, x, c) in enumerate(zip(getattr(run, name), getattr(clean, name), getattr(ablated, name))):
            own = (group.kind == "input" and name == "embeds") or (name == group.kind.replace("attn", "ctx")
                                                                   and i == group.layer)
            out.append(c.expand_as(x) if own else r - x + c)
        return out

    def streams(name, own: str):
        return [x if (group.kind == own and j == group.layer) else r - x + c
                for j, (r, x, c) in enumerate(zip(getattr(run, name), getattr(clean, name), getattr(ablated, name)))]

    final = run.resid_final - clean.resid_final + ablated.resid_final
    return WriterRecord(values("embeds"), values("ctx"), values("mlp"), streams("resid_pre", "attn"),
                        streams("resid_mid", "mlp"), final)


__all__ = ["NodeGroup", "group_gradients", "group_record", "incoming", "node_groups", "patched_run"]
