"""The disentangled forward: every reader mixes the delta stack under its own gates.

    in_r = base_r + sum_{w < prefix(r)} m[w, r] n[w] (x_w - c_w)
    base_r = sum_{w < prefix(r)} c_w   (+ the clean embeddings when they are not nodes)

(method.md 2.2). c_w is the ablated value of writer w: the unpruned model's output on the
corrupted input (interchange), its mean over a set of inputs (mean), or 0 (zero). The base of a
reader group is a prefix sum of c, which for the unpruned model is just its residual stream, so a
`WriterRecord` of one plain forward holds everything: residual streams for the bases, and the
head contexts (before the output projection) from which x_w - c_w is formed per head. Under
interchange and mean ablation the head's share of the output bias cancels; under zero ablation it
stays, b_O / H per head (method.md 2.3).
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from ..graph import Graph
from .base import Adapter
from .delta_stack import DeltaStack


@dataclass
class WriterRecord:
    """The unpruned model's writers on one input batch; every field batch-first."""
    embeds: list[torch.Tensor]      # embedding writers' outputs, each (B, S, D), as the adapter gives them
    ctx: list[torch.Tensor]         # per layer, head contexts (B, S, H, dh) before the output projection
    mlp: list[torch.Tensor]         # per layer, the MLP output (B, S, D)
    resid_pre: list[torch.Tensor]   # per layer, the residual stream entering it
    resid_mid: list[torch.Tensor]   # per layer, the MLP's input stream: after attention (or before it, parallel)
    resid_final: torch.Tensor       # the residual stream after the last layer

    def map(self, fn) -> "WriterRecord":
        def apply(v):
            return [fn(t) for t in v] if isinstance(v, list) else fn(v)
        return WriterRecord(**{f.name: apply(getattr(self, f.name)) for f in fields(self)})

    def select(self, index) -> "WriterRecord":
        return self.map(lambda t: t[index])

    @staticmethod
    def cat(records: list["WriterRecord"]) -> "WriterRecord":
        first = records[0]
        out = {}
        for f in fields(first):
            vals = [getattr(r, f.name) for r in records]
            out[f.name] = ([torch.cat(parts) for parts in zip(*vals)] if isinstance(vals[0], list)
                           else torch.cat(vals))
        return WriterRecord(**out)


def attention_masks(adapter: Adapter, attention_mask, seq_len: int, device) -> list[torch.Tensor | None]:
    """Each layer's attention mask (layers may differ in their sliding window), built once per window."""
    by_window = {}
    out = []
    for layer in range(adapter.num_layers):
        window = adapter.sliding_window(layer)
        if window not in by_window:
            by_window[window] = attention_mask_for(adapter, attention_mask, seq_len, device, window)
        out.append(by_window[window])
    return out


def attention_mask_for(adapter: Adapter, attention_mask, seq_len: int, device, window: int | None = None):
    """A boolean (B, 1, S, S) mask, or None when plain causal (or full) attention is exact."""
    if attention_mask is None and (window is None or seq_len <= window):
        return None
    i = torch.arange(seq_len, device=device)
    allowed = torch.ones(seq_len, seq_len, dtype=torch.bool, device=device)
    if adapter.causal:
        allowed = i[:, None] >= i[None, :]
    if window is not None:
        allowed = allowed & (i[:, None] - i[None, :] < window)
    allowed = allowed[None, None]
    if attention_mask is not None:
        allowed = allowed & attention_mask.bool()[:, None, None, :]
    # A query with nothing to attend to (left padding) attends to itself rather than yield NaN.
    return allowed | torch.eye(seq_len, dtype=torch.bool, device=device)


def attend(adapter: Adapter, layer: int, q, k, v, masks) -> torch.Tensor:
    """SDPA (FlashAttention kernels on CUDA) -> head contexts (B, S, H, dh); masks from attention_masks."""
    mask = masks[layer] if masks is not None else None
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, is_causal=adapter.causal and mask is None,
        scale=adapter.attention_scale(layer), enable_gqa=q.shape[1] != k.shape[1])
    return out.transpose(1, 2)


def _position_ids(input_ids):
    return torch.arange(input_ids.shape[1], device=input_ids.device)[None].expand(input_ids.shape[0], -1)


def _embedding_writers(adapter: Adapter, embeds: list[torch.Tensor], embedding_nodes: int) -> list[torch.Tensor]:
    if embedding_nodes == len(embeds):
        return embeds
    return [sum(embeds)] if embedding_nodes == 1 else []


class LayerRunner:
    """How the forward runs the whole model and each decoder layer: by direct calls (this default).

    Installed as `adapter.runner`. edgeprune.checkpointing recomputes each layer in backward;
    edgeprune.distributed gathers each FSDP2-sharded layer's weights around it. `fn(*args)` is the
    layer's (or model's) computation: the tensors that need gradients are passed as `args` (so a
    runner can hook them), everything else is closed over.
    """

    def model(self, fn, *args):
        return fn(*args)

    def layer(self, index: int, fn, *args):
        return fn(*args)


_DIRECT = LayerRunner()


def runner_of(adapter: Adapter) -> LayerRunner:
    return getattr(adapter, "runner", None) or _DIRECT


@torch.no_grad()
def record_writers(adapter: Adapter, input_ids, attention_mask=None) -> WriterRecord:
    """One plain forward of the unpruned model, keeping what the ablations need."""
    return runner_of(adapter).model(_record_writers, adapter, input_ids, attention_mask)


def _record_writers(adapter: Adapter, input_ids, attention_mask) -> WriterRecord:
    masks = attention_masks(adapter, attention_mask, input_ids.shape[1], input_ids.device)
    pos = _position_ids(input_ids)
    embeds = adapter.embeddings(input_ids)
    resid = sum(embeds)
    H, K = adapter.num_heads, adapter.num_kv_heads
    runner = runner_of(adapter)
    ctxs, mlps, pres, mids = [], [], [], []

    for layer in range(adapter.num_layers):
        def plain_layer(resid, layer=layer):
            q, k, v = adapter.attention_inputs(layer, resid.expand(H + 2 * K, *resid.shape), pos)
            ctx = attend(adapter, layer, q, k, v, masks)
            w_o, b_o = adapter.output_projection(layer)
            attn = ctx.flatten(2) @ w_o.flatten(0, 1)
            attn = attn if b_o is None else attn + b_o
            # parallel residual (x + attn(x) + mlp(x)): the MLP reads the layer's input
            mid = resid if adapter.parallel_residual else resid + attn
            return ctx, attn, mid, adapter.mlp(layer, mid)

        pres.append(resid)
        ctx, attn, mid, out = runner.layer(layer, plain_layer, resid)
        mids.append(mid)  # the MLP reader's residual stream: its base under ablation
        resid = resid + attn + out
        ctxs.append(ctx)
        mlps.append(out)
    return WriterRecord(embeds, ctxs, mlps, pres, mids, resid)


def run_disentangled(adapter: Adapter, graph: Graph, input_ids, record: WriterRecord | None,
                     edges: torch.Tensor, nodes: torch.Tensor, attention_mask=None, positions=None,
                     backend=None, recompute_readers: bool = True) -> torch.Tensor:
    """Logits of the gated model: (B, S, V), or (B, P, V) at `positions` (B, P).

    record None means zero ablation. edges / nodes: flat gate values in graph order.
    recompute_readers: recompute the attention readers' mixtures and norms in backward rather than
    keep them (R = H + 2K full-width tensors per layer); costs one more mixing pass per layer.
    """
    return runner_of(adapter).model(_run_disentangled, adapter, graph, input_ids, record, edges, nodes,
                                    attention_mask, positions, backend, recompute_readers)


class _Recomputed(torch.autograd.Function):
    """fn(token, gates, base) run without keeping its intermediates; rerun in backward.

    A lean torch.utils.checkpoint for the attention readers, whose hooks on every saved tensor cost
    more host time than the rerun itself at GPT-2 small's size; it keeps only its three inputs. Its
    token input orders it like a read of the delta stack: its backward, which accumulates into the
    stack's gradient through the rerun's reads, runs before the backward of the writes before it.
    Unlike checkpoint, the rerun's outputs (q, k, v) and their incoming gradients stay alive through
    its backward (edgeprune.plan counts them).
    """

    @staticmethod
    def forward(ctx, fn, token, gates, base):
        ctx.fn = fn
        ctx.save_for_backward(token, gates, base)
        with torch.no_grad():
            return fn(token, gates, base)

    @staticmethod
    def backward(ctx, *grads):
        token, gates, base = ctx.saved_tensors
        # the token always takes part, so the rerun's reads reach the delta stack's gradient even
        # when neither the gates nor the base need one
        leaves = (token.detach().requires_grad_(), gates.detach().requires_grad_(ctx.needs_input_grad[2]),
                  base.detach().requires_grad_(ctx.needs_input_grad[3]))
        with torch.enable_grad():
            outs = ctx.fn(*leaves)
        used = [(o, g) for o, g in zip(outs, grads) if g is not None and o.requires_grad]
        if used:
            torch.autograd.backward([o for o, _ in used], [g for _, g in used],
                                    inputs=[t for t in leaves if t.requires_grad])
        token_grad = token.new_empty(0) if ctx.needs_input_grad[1] else None
        return None, token_grad, leaves[1].grad, leaves[2].grad


def _run_disentangled(adapter, graph, input_ids, record, edges, nodes, attention_mask, positions, backend,
                      recompute_readers):
    B, S = input_ids.shape
    H, D = adapter.num_heads, adapter.d_model
    E = graph.embedding_nodes
    masks = attention_masks(adapter, attention_mask, S, input_ids.device)
    pos = _position_ids(input_ids)
    stack = DeltaStack(graph.num_writers, (B, S, D), adapter.dtype, input_ids.device, backend)
    runner = runner_of(adapter)

    def base_of(resid):  # the ablated prefix sum, shaped (B, S, D)
        b = clean_base if resid is None else (resid if clean_base is None else resid + clean_base)
        return b.expand(B, S, D) if b is not None else torch.zeros(B, S, D, dtype=adapter.dtype,
                                                                    device=input_ids.device)

    embeds = adapter.embeddings(input_ids)
    clean_base = None
    if E == 0:  # clean embeddings reach every reader unmasked (method.md 1.1)
        clean_base = sum(embeds) - (sum(record.embeds) if record is not None else 0)
    else:
        ablated = _embedding_writers(adapter, record.embeds, E) if record is not None else None
        rows = [x - c for x, c in zip(_embedding_writers(adapter, embeds, E), ablated)] if ablated else \
            _embedding_writers(adapter, embeds, E)
        stack.write(0, torch.stack([r.expand(B, S, D) for r in rows]))

    def attention_readers(layer, token, gates, base):
        stack.token = token
        inputs = stack.read(gates, base)
        return adapter.attention_inputs(layer, inputs, pos)

    for layer in range(graph.num_layers):
        # One decoder layer: its tensors with gradients are arguments (the runner may hook them); the
        # returned token carries the layer's reads and writes into the rest of the autograd graph.
        def gated_layer(token, attn_edges, mlp_edges, nodes, layer=layer):
            stack.token = token
            p = graph.attn_prefix(layer)
            gates = attn_edges.view(graph.attn_readers_per_layer, p) * nodes[:p]
            base = base_of(record.resid_pre[layer] if record else None)
            if recompute_readers and torch.is_grad_enabled():
                # The H + 2K mixtures and their norms are recomputed in backward instead of being
                # saved: R full-width tensors per layer, more than the delta stack itself holds.
                q, k, v = _Recomputed.apply(lambda *a: attention_readers(layer, *a), stack.token, gates, base)
            else:
                q, k, v = attention_readers(layer, stack.token, gates, base)
            ctx = attend(adapter, layer, q, k, v, masks)
            w_o, b_o = adapter.output_projection(layer)
            diff = ctx - record.ctx[layer] if record is not None else ctx
            heads = torch.einsum("bshe,hed->hbsd", diff, w_o)
            if record is None and b_o is not None:
                heads = heads + b_o / H
            stack.write(graph.head_writer(layer, 0), heads)

            gates = mlp_edges.view(1, -1) * nodes[:graph.mlp_prefix(layer)]
            mlp_in = stack.read(gates, base_of(record.resid_mid[layer] if record else None))[0]
            out = adapter.mlp(layer, mlp_in)
            stack.write(graph.mlp_writer(layer), (out - record.mlp[layer] if record is not None else out)[None])
            return stack.token

        start, stop = graph.attn_segment(layer)
        seg = graph.mlp_segment(layer)
        stack.token = runner.layer(layer, gated_layer, stack.token, edges[start:stop], edges[seg.start:seg.stop],
                                   nodes)

    seg = graph.final_segment
    gates = edges[seg.start:seg.stop].view(1, -1) * nodes
    base = base_of(record.resid_final if record else None)
    if positions is None:
        return adapter.unembed(stack.read(gates, base)[0])
    flat = (torch.arange(B, device=positions.device)[:, None] * S + positions).reshape(-1)
    final = stack.read(gates, base.reshape(B * S, D)[flat], positions=flat)[0]
    return adapter.unembed(final).view(B, positions.shape[1], -1)
