"""Llama-family models (Llama 2/3, CodeLlama, Mistral, Qwen2, Qwen3): RMSNorm, rotary positions, GQA.

Qwen3 normalises each head's query and key (q_norm, k_norm over the head dimension) before the
rotary; Mistral and Qwen2/3 may limit attention to a sliding window, in every layer (Mistral) or
per layer (config.layer_types).
"""
from __future__ import annotations

import sys
from dataclasses import replace

from ..ops.constants import LLAMA_EPS
from .base import Adapter, LayerStructure, per_head


class LlamaAdapter(Adapter):
    family = "llama"
    model_classes = ("LlamaForCausalLM (CodeLlama included)", "MistralForCausalLM", "Qwen2ForCausalLM",
                     "Qwen3ForCausalLM")
    gate_eps = LLAMA_EPS  # the reference's Llama gates (docs/method.md 3.1)
    embedding_nodes_allowed = (0, 1)
    default_embedding_nodes = 0
    # qk_norm: Qwen3's, per head; __init__ drops it for the models without one (Llama, Mistral, Qwen2)
    structure = LayerStructure(norm="rms", qk_norm="head", mlp="gated", rotary=True)

    def __init__(self, model):
        super().__init__(model)
        cfg = model.config
        self.inner = model.model
        self.num_layers = cfg.num_hidden_layers
        self.num_heads = cfg.num_attention_heads
        self.num_kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        self.d_model = cfg.hidden_size
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.intermediate_size = cfg.intermediate_size
        attn = self.inner.layers[0].self_attn
        if getattr(attn, "q_norm", None) is None:
            self.structure = replace(self.structure, qk_norm=None)
        # The model's own rotary helper, so each family keeps its exact rotary convention.
        self._apply_rotary = sys.modules[type(attn).__module__].apply_rotary_pos_emb
        window = getattr(cfg, "sliding_window", None) if getattr(cfg, "use_sliding_window", True) else None
        types = getattr(cfg, "layer_types", None)
        self._windows = [window if types is None or types[layer] == "sliding_attention" else None
                         for layer in range(self.num_layers)]

    def decoder_layers(self):
        return self.inner.layers

    def sliding_window(self, layer):
        return self._windows[layer]

    def embeddings(self, input_ids):
        return [self.inner.embed_tokens(input_ids)]

    def _weights(self, proj, heads):
        w = proj.weight.view(heads, self.head_dim, self.d_model).transpose(1, 2)  # (heads, D, dh)
        return w, proj.bias

    def attention_inputs(self, layer, readers, position_ids):
        block = self.inner.layers[layer]
        attn = block.self_attn
        H = self.num_heads
        K = (readers.shape[0] - H) // 2  # key-value heads, or H when each query head reads its own (kv_edges)
        # One norm per group, not one over all H + 2K readers: RMSNorm's float32 temporaries for
        # every reader at once would raise a bf16 model's peak (and this norm is not fused).
        norm = self.reader_norm(block)
        q = per_head(norm(readers[:H]), *self._weights(attn.q_proj, H))
        k = per_head(norm(readers[H:H + K]), *self._weights(attn.k_proj, self.num_kv_heads))
        v = per_head(norm(readers[H + K:]), *self._weights(attn.v_proj, self.num_kv_heads))
        q, k = self.qk_norm(attn, q, k)
        cos, sin = self.rotary(layer, v, position_ids)
        q, k = self._apply_rotary(q, k, cos, sin)
        return q, k, v

    def reader_norm(self, block):
        """The norm every attention reader applies to its own mixture."""
        return block.input_layernorm

    def qk_norm(self, attn, q, k):
        """Qwen3 (and Gemma 3): each head's query and key normed over the head dimension, before the rotary."""
        if getattr(attn, "q_norm", None) is None:
            return q, k
        return attn.q_norm(q), attn.k_norm(k)

    def rotary(self, layer, x, position_ids):
        """(cos, sin) of the model's own rotary embedding (its scaling, e.g. Llama 3.1's "llama3", included)."""
        return self.inner.rotary_emb(x, position_ids)

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
