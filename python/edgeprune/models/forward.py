"""The gated forward: every reader mixes the delta stack under its own gates.

    in_r = base_r + sum_{w < prefix(r)} m[w, r] n[w] (x_w - c_w)
    base_r = sum_{w < prefix(r)} c_w   (+ the clean embeddings when they are not nodes)

(docs/method.md 2.2). c_w is the ablated value of writer w, read from a `WriterRecord`; with no
record (zero ablation) c_w = 0. Under interchange and mean ablation the head's share of the output
bias cancels; under zero ablation it stays, b_O / H per head (docs/method.md 2.3).

Everything here is a module-level function of what it uses. A `LayerRunner` says how the model
and each decoder layer run: directly (`DIRECT`), recomputed in backward (edgeprune.recomputation)
or inside FSDP's hooks (edgeprune.distributed). A layer's computation is handed to the runner as a
function whose tensor arguments are exactly the ones that need gradients, so a runner can hook them.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache, partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ..errors import UserError
from ..graph import Graph
from .base import Adapter
from .delta_stack import BlockStack, DeltaStack
from .records import WriterRecord

# The attention readers' mixtures are recomputed in backward unless a caller says otherwise: the
# default of the forward, of TrainConfig.recompute_readers and of the memory planner.
RECOMPUTE_READERS = True


class LayerRunner:
    """Runs the whole model's pass and each decoder layer: by direct calls (this base class).

    A runner that adds something (checkpointing, FSDP) wraps another in `inner`.
    """
    inner: "LayerRunner | None" = None

    def run_model(self, fn, *args):
        return fn(*args)

    def run_layer(self, index: int, fn, *args):
        return fn(*args)

    def includes(self, kind: type) -> bool:
        """Whether this runner, or one it wraps, is a `kind`."""
        runner = self
        while runner is not None:
            if isinstance(runner, kind):
                return True
            runner = runner.inner
        return False


DIRECT = LayerRunner()

# How the gated forward holds the writers' deltas (models/delta_stack.py): "delta", the write-once
# buffer (DeltaStack) an eager step runs on; "blocks", the functional form (BlockStack) a compiled
# step traces. Both compute the same function; the caller says which, so that a trace and the
# eager run of the same code take the same path.
STACKS = ("delta", "blocks")


# ------------------------------------------------------------------------------ attention

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
    """Head contexts (B, S, H, dh); masks from attention_masks (None: plain causal attention in every layer).

    SDPA (FlashAttention kernels on CUDA); with soft-capped logits, FlexAttention with the cap as a
    score_mod on CUDA and an explicit math path elsewhere.
    """
    mask = masks[layer] if masks is not None else None
    scale, cap = adapter.attention_scale(layer), adapter.attention_softcap(layer)
    if cap is not None:
        if q.is_cuda:
            return softcapped_flex(q, k, v, mask, scale, cap, adapter.causal)
        return softcapped_math(q, k, v, mask, scale, cap, adapter.causal)
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, is_causal=adapter.causal and mask is None,
        scale=scale, enable_gqa=q.shape[1] != k.shape[1])
    return out.transpose(1, 2)


def _allowed(mask, causal: bool, seq_len: int, device):
    """A boolean mask broadcastable to (B, H, S, S), or None for full attention."""
    if mask is not None or not causal:
        return mask
    i = torch.arange(seq_len, device=device)
    return i[:, None] >= i[None, :]


def softcapped_math(q, k, v, mask, scale: float, cap: float, causal: bool = True) -> torch.Tensor:
    """Attention with logits tanh(s / cap) * cap, written out (the CPU path); -> (B, S, H, dh).

    Scores in the model's dtype and softmax in fp32, as Hugging Face's eager Gemma 2 attention does.
    """
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    scores = torch.tanh((q @ k.transpose(-1, -2)) * scale / cap) * cap
    allowed = _allowed(mask, causal, q.shape[2], q.device)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    probs = scores.softmax(-1, dtype=torch.float32).to(q.dtype)
    return (probs @ v).transpose(1, 2)


def softcapped_flex(q, k, v, mask, scale: float, cap: float, causal: bool = True, compiled: bool = True):
    """Attention with logits tanh(s / cap) * cap in FlexAttention (fused on CUDA); -> (B, S, H, dh).

    The cap and the mask are one score_mod. compiled=False runs FlexAttention's eager reference
    (any device; the tests compare it with the math path on the CPU).
    """
    from torch.nn.attention.flex_attention import flex_attention
    B, S = q.shape[0], q.shape[2]
    allowed = _allowed(mask, causal, S, q.device)
    allowed = None if allowed is None else allowed.expand(B, 1, S, S)

    def score_mod(score, b, h, q_idx, kv_idx):
        score = torch.tanh(score / cap) * cap
        if allowed is None:
            return score
        return torch.where(allowed[b, 0, q_idx, kv_idx], score, -float("inf"))

    attention = _compiled_flex() if compiled else flex_attention
    out = attention(q, k, v, score_mod=score_mod, scale=scale, enable_gqa=q.shape[1] != k.shape[1])
    return out.transpose(1, 2)


@cache
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention
    return torch.compile(flex_attention, dynamic=False)


def position_ids(input_ids):
    return torch.arange(input_ids.shape[1], device=input_ids.device)[None].expand(input_ids.shape[0], -1)


def embedding_writers(embeds: list[torch.Tensor], embedding_nodes: int) -> list[torch.Tensor]:
    """The adapter's embedding outputs as the graph's embedding writers (E = 2, 1 or 0 of them)."""
    if embedding_nodes == len(embeds):
        return embeds
    return [sum(embeds)] if embedding_nodes == 1 else []


# ------------------------------------------------------------------------------ plain forward

@torch.no_grad()
def record_writers(adapter: Adapter, input_ids, attention_mask=None, runner: LayerRunner = DIRECT,
                   embeds: list[torch.Tensor] | None = None) -> WriterRecord:
    """One plain forward of the unpruned model, keeping what the ablations need.

    embeds: the embedding outputs to run from instead of input_ids' own (as adapter.embeddings
    gives them); integrated gradients along the inputs runs the model on interpolated embeddings.
    """
    return runner.run_model(_record_writers, adapter, input_ids, attention_mask, runner, embeds)


def _plain_layer(adapter: Adapter, layer: int, pos, masks, resid):
    H, K = adapter.num_heads, adapter.num_kv_heads
    q, k, v = adapter.attention_inputs(layer, resid.expand(H + 2 * K, *resid.shape), pos)
    ctx = adapter.head_contexts(layer, attend(adapter, layer, q, k, v, masks))
    w_o, b_o = adapter.output_projection(layer)
    attn = ctx.flatten(2) @ w_o.flatten(0, 1)
    attn = attn if b_o is None else attn + b_o
    # parallel residual (x + attn(x) + mlp(x)): the MLP reads the layer's input
    mid = resid if adapter.parallel_residual else resid + attn
    return ctx, attn, mid, adapter.mlp(layer, mid)


def _record_writers(adapter: Adapter, input_ids, attention_mask, runner: LayerRunner, embeds=None) -> WriterRecord:
    masks = attention_masks(adapter, attention_mask, input_ids.shape[1], input_ids.device)
    pos = position_ids(input_ids)
    embeds = adapter.embeddings(input_ids) if embeds is None else embeds
    resid = sum(embeds)
    ctxs, mlps, pres, mids = [], [], [], []
    for layer in range(adapter.num_layers):
        pres.append(resid)
        ctx, attn, mid, out = runner.run_layer(layer, partial(_plain_layer, adapter, layer, pos, masks), resid)
        mids.append(mid)  # the MLP reader's residual stream: its base under ablation
        resid = resid + attn + out
        ctxs.append(ctx)
        mlps.append(out)
    return WriterRecord(embeds, ctxs, mlps, pres, mids, resid)


# ------------------------------------------------------------------------------ gated forward

@dataclass(frozen=True)
class _Pass:
    """What every layer of one gated pass reads (nothing in it changes during the pass)."""
    adapter: Adapter
    graph: Graph
    stack: DeltaStack | BlockStack
    record: WriterRecord | None
    clean_base: torch.Tensor | None   # clean minus ablated embeddings, when embeddings are not nodes
    masks: list
    pos: torch.Tensor
    recompute_readers: bool
    blocks: bool                      # BlockStack (its readers recomputed in a checkpoint region)
    # f(gates (R, P)) -> (R, 1, S, D) added to those readers' inputs: optimal ablation's gradient
    # path to its constants (models/optimal_ablation.py, AblationConstants.reader_term); None elsewhere
    reader_term: Callable | None = None

    def term(self, gates: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The reader term for a read under `gates`, as a tuple (empty when there is none)."""
        return () if self.reader_term is None else (self.reader_term(gates),)

    def base(self, stream: torch.Tensor | None) -> torch.Tensor:
        """A reader group's base: the ablated prefix sum (a residual stream of the record), shaped (B, S, D)."""
        parts = [t for t in (stream, self.clean_base) if t is not None]
        if not parts:
            return self.stack.new_zeros(self.stack.shape)
        return (parts[0] if len(parts) == 1 else parts[0] + parts[1]).expand(self.stack.shape)


def gated_forward(adapter: Adapter, graph: Graph, input_ids, *, edges: torch.Tensor, nodes: torch.Tensor,
                  record: WriterRecord | None, attention_mask=None, positions=None, backend=None,
                  recompute_readers: bool = RECOMPUTE_READERS, runner: LayerRunner = DIRECT,
                  reader_term: Callable | None = None, stack: str = "delta") -> torch.Tensor:
    """Logits of the gated model: (B, S, V), or (B, P, V) at `positions` (B, P).

    edges / nodes: flat gate values in graph order. record None means zero ablation. Without
    gradients, edges may be (G, num_edges): G gate sets, the batch holding G blocks of B / G
    examples, block g run under gate set g (single-edge ablations batched, edgeprune.attribution).
    recompute_readers: recompute the attention readers' mixtures and norms in backward rather than
    keep them (H + 2K full-width tensors per layer); costs one more mixing pass per layer.
    reader_term: f(gates (R, P)) -> (R, 1, S, D), added to every reader's input (_Pass.reader_term).
    stack: "delta" (the in-place buffer, for eager steps) or "blocks" (the functional stack a
    compiled step traces; it also runs eagerly, to the same logits and gradients).
    """
    if stack not in STACKS:
        raise UserError(f"stack={stack!r} is not a delta stack kind; choose one of {STACKS} (\"blocks\" for a "
                        "compiled step)")
    return runner.run_model(_gated_forward, adapter, graph, input_ids, edges, nodes, record, attention_mask,
                            positions, backend, recompute_readers, runner, reader_term, stack == "blocks")


def _gated_forward(adapter, graph, input_ids, edges, nodes, record, attention_mask, positions, backend,
                   recompute_readers, runner, reader_term=None, blocks=False):
    B, S = input_ids.shape
    D = adapter.d_model
    if blocks:
        stack = BlockStack((B, S, D), adapter.dtype, input_ids.device, backend)
    else:
        stack = DeltaStack(graph.num_writers, (B, S, D), adapter.dtype, input_ids.device, backend)
    order = stack.start()
    embeds = adapter.embeddings(input_ids)
    clean_base = None
    if graph.embedding_nodes == 0:  # clean embeddings reach every reader unmasked (docs/method.md 1.1)
        clean_base = sum(embeds) - (sum(record.embeds) if record is not None else 0)
    else:
        rows = embedding_writers(embeds, graph.embedding_nodes)
        if record is not None:
            rows = [x - c for x, c in zip(rows, embedding_writers(record.embeds, graph.embedding_nodes))]
        order = stack.write(order, 0, torch.stack([r.expand(B, S, D) for r in rows]))
    run = _Pass(adapter, graph, stack, record, clean_base,
                attention_masks(adapter, attention_mask, S, input_ids.device), position_ids(input_ids),
                recompute_readers, blocks, reader_term)

    for layer in range(graph.num_layers):
        start, stop = graph.attn_segment(layer)
        seg = graph.mlp_segment(layer)
        order = runner.run_layer(layer, partial(_gated_layer, run, layer), order, edges[..., start:stop],
                                 edges[..., seg.start:seg.stop], nodes)

    seg = graph.final_segment
    gates = edges[..., seg.start:seg.stop].unsqueeze(-2) * nodes
    base = run.base(record.resid_final if record is not None else None)
    term = run.term(gates)
    if positions is None:
        final = stack.read(order, gates, base)[0]
        return adapter.unembed(final + term[0][0] if term else final)
    flat = (torch.arange(B, device=positions.device)[:, None] * S + positions).reshape(-1)
    final = stack.read(order, gates, base.reshape(B * S, D)[flat], positions=flat)[0]
    if term:
        final = final + term[0][0, 0][flat % S]
    return adapter.unembed(final).view(B, positions.shape[1], -1)


def _attention_readers(run: _Pass, layer: int, order, gates, base, *term):
    mixed = run.stack.read(order, gates, base)
    return run.adapter.attention_inputs(layer, mixed + term[0] if term else mixed, run.pos)


def _gated_layer(run: _Pass, layer: int, order, attn_edges, mlp_edges, nodes):
    """One decoder layer: its heads' and its MLP's writes; returns the next order handle."""
    adapter, graph, stack, record = run.adapter, run.graph, run.stack, run.record
    p = graph.attn_prefix(layer)
    gates = attn_edges.unflatten(-1, (graph.attn_readers_per_layer, p)) * nodes[:p]
    base = run.base(record.resid_pre[layer] if record is not None else None)
    readers = partial(_attention_readers, run, layer)
    term = run.term(gates)
    if run.recompute_readers and torch.is_grad_enabled():
        # The H + 2K mixtures and their norms are recomputed in backward instead of being saved:
        # R full-width tensors per layer, more than the delta stack itself holds. On the functional
        # stack (a traced step), checkpoint's region tells the compiler's partitioner to recompute them;
        # _Recomputed's order handle belongs to the in-place buffer.
        if run.blocks:
            q, k, v = checkpoint(readers, order, gates, base, *term, use_reentrant=False)
        else:
            q, k, v = _Recomputed.apply(readers, order, gates, base, *term)
    else:
        q, k, v = readers(order, gates, base, *term)
    ctx = adapter.head_contexts(layer, attend(adapter, layer, q, k, v, run.masks))
    w_o, b_o = adapter.output_projection(layer)
    diff = ctx - record.ctx[layer] if record is not None else ctx
    if graph.attention_writers == "layer":  # the layer's attention is one writer: the heads' sum
        heads = (diff.flatten(2) @ w_o.flatten(0, 1))[None]
        bias = b_o
    else:
        heads = torch.einsum("bshe,hed->hbsd", diff, w_o)
        bias = None if b_o is None else b_o / adapter.num_heads
    if record is None and bias is not None:
        heads = heads + bias
    order = stack.write(order, graph.head_writer(layer, 0), heads)

    gates = mlp_edges.unsqueeze(-2) * nodes[:graph.mlp_prefix(layer)]
    mlp_in = stack.read(order, gates, run.base(record.resid_mid[layer] if record is not None else None))[0]
    term = run.term(gates)
    mlp_in = mlp_in + term[0][0] if term else mlp_in
    out = adapter.mlp(layer, mlp_in)
    return stack.write(order, graph.mlp_writer(layer), (out - record.mlp[layer] if record is not None else out)[None])


class _Recomputed(torch.autograd.Function):
    """fn(order, gates, base, *extra) run without keeping its intermediates; rerun in backward.

    A lean torch.utils.checkpoint for the attention readers, whose hooks on every saved tensor cost
    more host time than the rerun itself at GPT-2 small's size; it keeps only its inputs. Its
    order input places it like a read of the delta stack: its backward, which accumulates into the
    stack's gradient through the rerun's reads, runs before the backward of the writes before it.
    Unlike checkpoint, the rerun's outputs (q, k, v) and their incoming gradients stay alive through
    its backward (edgeprune.planning counts them).
    """

    @staticmethod
    def forward(ctx, fn, order, gates, base, *extra):
        ctx.fn = fn
        ctx.save_for_backward(order, gates, base, *extra)
        with torch.no_grad():
            return fn(order, gates, base, *extra)

    @staticmethod
    def backward(ctx, *grads):
        order, *tensors = ctx.saved_tensors
        # the order handle always takes part, so the rerun's reads reach the delta stack's gradient
        # even when neither the gates nor the base need one
        leaves = (order.detach().requires_grad_(),) + tuple(
            t.detach().requires_grad_(need) for t, need in zip(tensors, ctx.needs_input_grad[2:]))
        with torch.enable_grad():
            outs = ctx.fn(*leaves)
        used = [(o, g) for o, g in zip(outs, grads) if g is not None and o.requires_grad]
        if used:
            torch.autograd.backward([o for o, _ in used], [g for _, g in used],
                                    inputs=[t for t in leaves if t.requires_grad])
        order_grad = order.new_empty(0) if ctx.needs_input_grad[1] else None
        return (None, order_grad, *[t.grad for t in leaves[1:]])
