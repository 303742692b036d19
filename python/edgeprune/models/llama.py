"""Llama-family models (Llama 2/3, CodeLlama, Mistral, Qwen2): RMSNorm, rotary positions, GQA."""
from __future__ import annotations

import sys


from .base import Adapter, per_head


class LlamaAdapter(Adapter):
    family = "llama"
    embedding_nodes_allowed = (0, 1)
    default_embedding_nodes = 0

    def __init__(self, model):
        super().__init__(model)
        cfg = model.config
        self.inner = model.model
        self.num_layers = cfg.num_hidden_layers
        self.num_heads = cfg.num_attention_heads
        self.num_kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        self.d_model = cfg.hidden_size
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        attn = self.inner.layers[0].self_attn
        if hasattr(attn, "q_norm") or hasattr(attn, "k_norm"):
            raise ValueError(f"{type(model).__name__} normalises queries and keys per head (q_norm/k_norm), "
                             "which the Llama-family adapter does not implement.")
        # The model's own rotary helper, so each family keeps its exact rotary convention.
        self._apply_rotary = sys.modules[type(attn).__module__].apply_rotary_pos_emb
        self._window = getattr(cfg, "sliding_window", None) if getattr(cfg, "use_sliding_window", True) else None

    @property
    def sliding_window(self):
        return self._window

    def embeddings(self, input_ids):
        return [self.inner.embed_tokens(input_ids)]

    def _weights(self, proj, heads):
        w = proj.weight.view(heads, self.head_dim, self.d_model).transpose(1, 2)  # (heads, D, dh)
        return w, proj.bias

    def attention_inputs(self, layer, readers, position_ids):
        block = self.inner.layers[layer]
        attn = block.self_attn
        H, K = self.num_heads, self.num_kv_heads
        # One norm per group, not one over all H + 2K readers: RMSNorm's float32 temporaries for
        # every reader at once would raise a bf16 model's peak (and this norm is not fused).
        norm = block.input_layernorm
        q = per_head(norm(readers[:H]), *self._weights(attn.q_proj, H))
        k = per_head(norm(readers[H:H + K]), *self._weights(attn.k_proj, K))
        v = per_head(norm(readers[H + K:]), *self._weights(attn.v_proj, K))
        cos, sin = self.inner.rotary_emb(v, position_ids)
        q, k = self._apply_rotary(q, k, cos, sin)
        return q, k, v

    def attention_scale(self, layer):
        return self.inner.layers[layer].self_attn.scaling

    def output_projection(self, layer):
        proj = self.inner.layers[layer].self_attn.o_proj
        w = proj.weight.view(self.d_model, self.num_heads, self.head_dim).permute(1, 2, 0)  # (H, dh, D)
        return w, proj.bias

    def mlp(self, layer, x):
        block = self.inner.layers[layer]
        return block.mlp(block.post_attention_layernorm(x))

    def unembed(self, x):
        return self.model.lm_head(self.inner.norm(x))
