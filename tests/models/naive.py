"""A naive float64 Edge Pruning forward, written from method.md 2.2 with explicit per-edge sums.

No delta stack, no prefix sums: every reader input is e + sum_w [m y_w + (1 - m) c_w] with
y_w = n_w x_w + (1 - n_w) c_w, over the reader's valid writers. It uses the adapter only for the
family's dense pieces (norms, projections, MLP, unembedding), which the all-gates-on tests check
against Hugging Face separately.
"""
import torch

from edgeprune.models.forward import attend, attention_masks


def writer_outputs(adapter, graph, ids):
    """Every writer's output on `ids` in the unpruned model, in writer order, plus the clean embedding sum."""
    embeds = adapter.embeddings(ids)
    E = graph.embedding_nodes
    outs = {2: list(embeds), 1: [sum(embeds)], 0: []}[E]
    resid = sum(embeds)
    pos = torch.arange(ids.shape[1])[None].expand(ids.shape[0], -1)
    masks = attention_masks(adapter, None, ids.shape[1], ids.device)
    H, K = adapter.num_heads, adapter.num_kv_heads
    for layer in range(graph.num_layers):
        q, k, v = adapter.attention_inputs(layer, resid.expand(H + 2 * K, *resid.shape), pos)
        heads = attention_writers(adapter, graph, layer, attend(adapter, layer, q, k, v, masks))
        outs += heads
        # parallel residual: the MLP reads the layer's input, not the heads' output
        m = adapter.mlp(layer, resid if adapter.parallel_residual else resid + sum(heads))
        outs.append(m)
        resid = resid + sum(heads) + m
    return outs, sum(embeds)


def attention_writers(adapter, graph, layer, ctx):
    """A layer's attention writers from its head contexts: each head's o_h = ctx_h W_O[h] + b_O / H,
    or their sum when the graph's attention is one writer per layer.

    With a norm on the attention's summed output s = sum_h o_h (Gemma 2 and 3, OLMo 2), head h
    writes o_h * norm(s) / s, elementwise: the norm's gain over the rms of s, the same for every
    head, so the writers sum to norm(s). Written from the model's norm weights and W_O (not the
    adapter's head_contexts and folded projection).
    """
    H = adapter.num_heads
    norm = adapter.attention_output_norm(layer)
    if norm is None:
        w_o, b_o = adapter.output_projection(layer)
    else:
        proj = adapter.model.model.layers[layer].self_attn.o_proj
        w_o, b_o = proj.weight.view(adapter.d_model, H, adapter.head_dim).permute(1, 2, 0), proj.bias
    heads = [ctx[:, :, h] @ w_o[h] + (0 if b_o is None else b_o / H) for h in range(H)]
    if norm is not None:
        scale = output_norm_scale(norm, sum(heads))
        heads = [o * scale for o in heads]
    return heads if graph.attention_writers == "heads" else [sum(heads)]


def output_norm_scale(norm, s):
    """norm(s) / s for the models' RMSNorm on s (B, S, D): its gain over the rms of s, in s's dtype
    (the modules themselves compute in fp32). Gemma's gain is 1 + weight, OLMo 2's the weight."""
    gemma = type(norm).__name__.startswith("Gemma")
    gain = 1 + norm.weight if gemma else norm.weight
    eps = norm.eps if gemma else norm.variance_epsilon
    return gain / torch.sqrt(s.pow(2).mean(-1, keepdim=True) + eps)


def naive_forward(adapter, graph, ids, ablated, edges, nodes):
    """ablated: per-writer ablated outputs c_w (list), and the clean embedding sum is added when E = 0."""
    E = graph.embedding_nodes
    embeds = adapter.embeddings(ids)
    x = {2: list(embeds), 1: [sum(embeds)], 0: []}[E]
    e = sum(embeds) if E == 0 else 0
    pos = torch.arange(ids.shape[1])[None].expand(ids.shape[0], -1)
    masks = attention_masks(adapter, None, ids.shape[1], ids.device)
    R = graph.attn_readers_per_layer  # H + 2K, or 3H with key and value readers per query head

    def reader_input(gate_row, prefix):
        total = e
        for w in range(prefix):
            y = nodes[w] * x[w] + (1 - nodes[w]) * ablated[w]
            total = total + gate_row[w] * y + (1 - gate_row[w]) * ablated[w]
        return total

    for layer in range(graph.num_layers):
        p = graph.attn_prefix(layer)
        start, stop = graph.attn_segment(layer)
        g = edges[start:stop].view(R, p)
        inputs = torch.stack([reader_input(g[r], p) for r in range(R)])
        q, k, v = adapter.attention_inputs(layer, inputs, pos)
        x += attention_writers(adapter, graph, layer, attend(adapter, layer, q, k, v, masks))
        seg = graph.mlp_segment(layer)
        x.append(adapter.mlp(layer, reader_input(edges[seg.start:seg.stop], seg.cols)))
    seg = graph.final_segment
    return adapter.unembed(reader_input(edges[seg.start:seg.stop], seg.cols))


def assert_matches_naive(out, ref, edges, nodes):
    """The gated forward's logits and their gradients on the gates equal the naive forward's (float64)."""
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)
    weights = torch.randn_like(ref)
    got = torch.autograd.grad((out * weights).sum(), (edges, nodes))
    want = torch.autograd.grad((ref * weights).sum(), (edges, nodes))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)
