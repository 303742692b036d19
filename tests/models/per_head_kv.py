"""A float64 Llama-family forward in which every query head reads its own key and value input.

The independent reference for kv_edges="query" (MIB's graph): written from the model's weights and
method.md 2.2, nothing of edgeprune's forward. Every reader forms its input as an explicit sum over
its edges, e + sum_w [g x_w + (1 - g) c_w], with one gate tensor per named edge; query head h's key
and value inputs are projected with the slices of its KV group g = h // (H / K). Attention is
written out per head (causal softmax, the model's rotary cos/sin, rotate-half). It borrows only
the model's own modules for the norms, the MLP, the rotary table and the unembedding
(float64_norms makes the RMSNorms compute in float64). Llama, Mistral, Qwen2 (q/k/v biases) and Qwen3 (per-head
q/k norms); no sliding window.
"""
from __future__ import annotations

import types

import torch

from helpers.edge_names import edge_names, writer_names


def float64_norms(model):
    """Make every RMSNorm of a float64 model compute in float64 (Hugging Face's compute in fp32, whose
    rounding, and the gradients through it, would differ with the order of the reductions around it)."""
    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))
    for module in model.modules():
        if type(module).__name__.endswith("RMSNorm"):
            module.forward = types.MethodType(forward, module)
    return model


class PerHeadKV:
    def __init__(self, model, embedding_nodes: int = 1):
        self.model, self.inner, cfg = model, model.model, model.config
        self.L, self.H, self.K = cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads
        self.D = cfg.hidden_size
        self.dh = getattr(cfg, "head_dim", None) or self.D // self.H
        self.E = embedding_nodes

    # ------------------------------------------------------------------ names
    def writers(self, before_layer: int | None = None, own_heads: bool = False) -> list[str]:
        return writer_names(["embeds"] if self.E else [], self.L, self.H, before_layer, own_heads)

    def edges(self) -> list[tuple[str, str]]:
        """Every (writer, reader) pair: a query, a key and a value reader per query head."""
        return edge_names(["embeds"] if self.E else [], self.L, self.H)

    # ------------------------------------------------------------------ pieces
    def _rope(self, x, cos, sin):
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
        return x * cos + rotated * sin

    def _slice(self, proj, head):
        rows = slice(head * self.dh, (head + 1) * self.dh)
        w = proj.weight[rows]                                    # (dh, D)
        return w, (proj.bias[rows] if proj.bias is not None else None)

    def _project(self, proj, head, x):
        w, b = self._slice(proj, head)
        out = x @ w.T
        return out if b is None else out + b

    def _head(self, layer, h, q_in, k_in, v_in, cos, sin):
        """Head h's output o_h (B, S, D) from its own three inputs."""
        block = self.inner.layers[layer]
        attn, norm = block.self_attn, block.input_layernorm
        g = h // (self.H // self.K)
        q = self._project(attn.q_proj, h, norm(q_in))
        k = self._project(attn.k_proj, g, norm(k_in))
        v = self._project(attn.v_proj, g, norm(v_in))
        if getattr(attn, "q_norm", None) is not None:
            q, k = attn.q_norm(q), attn.k_norm(k)
        q, k = self._rope(q, cos, sin), self._rope(k, cos, sin)
        scores = (q @ k.transpose(-1, -2)) * attn.scaling
        S = scores.shape[-1]
        causal = torch.ones(S, S, dtype=torch.bool).tril()
        probs = scores.masked_fill(~causal, float("-inf")).softmax(-1)
        ctx = probs @ v                                          # (B, S, dh)
        w_o = attn.o_proj.weight[:, h * self.dh:(h + 1) * self.dh]  # (D, dh)
        return ctx @ w_o.T

    # ------------------------------------------------------------------ forward
    def forward(self, ids, gates=None, ablated=None):
        """(logits, writer outputs). gates: {(writer, reader): gate} (None: every gate 1); ablated:
        {writer: c_w} (None: zeros). With every gate 1 the input of every reader is the residual stream."""
        gates = gates or {}
        ablated = ablated or {}
        emb = self.inner.embed_tokens(ids)
        pos = torch.arange(ids.shape[1])[None].expand(ids.shape[0], -1)
        cos, sin = self.inner.rotary_emb(emb, pos)
        x = {"embeds": emb} if self.E else {}
        e = emb if not self.E else 0

        def reader_input(reader, names):
            total = e
            for w in names:
                g = gates.get((w, reader), 1.0)
                c = ablated.get(w, torch.zeros(()))
                total = total + g * x[w] + (1 - g) * c
            return total

        for layer in range(self.L):
            names = self.writers(layer)
            for h in range(self.H):
                q_in, k_in, v_in = (reader_input(f"a{layer}.h{h}.{kind}", names) for kind in "qkv")
                x[f"a{layer}.h{h}"] = self._head(layer, h, q_in, k_in, v_in, cos, sin)
            block = self.inner.layers[layer]
            m_in = reader_input(f"m{layer}", self.writers(layer, own_heads=True))
            x[f"m{layer}"] = block.mlp(block.post_attention_layernorm(m_in))
        final = reader_input("resid_post", self.writers())
        return self.model.lm_head(self.inner.norm(final)), x

    def corrupted_writers(self, cids) -> dict:
        """c_w: every writer's output in the unpruned run on the corrupted input."""
        return {w: t.detach() for w, t in self.forward(cids)[1].items()}

    def logits(self, ids, gate_vector, edges, ablated):
        """Logits under a flat gate vector whose i-th entry gates edges[i] (named)."""
        return self.forward(ids, dict(zip(edges, gate_vector.unbind())), ablated)[0]
