"""GPT-NeoX models (Pythia): LayerNorm, partial rotary, fused per-head q/k/v, parallel residual.

With use_parallel_residual (every Pythia model) a layer computes x + attn(ln1(x)) + mlp(ln2(x)):
its MLP reads the layer's input, so the graph has no edge from a layer's heads to its own MLP
(Graph.parallel).
"""
from __future__ import annotations

import sys

from .base import Adapter, LayerStructure, per_head


class GPTNeoXAdapter(Adapter):
    family = "gpt_neox"
    model_classes = ("GPTNeoXForCausalLM (Pythia)",)
    embedding_nodes_allowed = (0, 1)
    default_embedding_nodes = 0
    structure = LayerStructure(norm="layer", mlp="gelu", rotary=True)

    def __init__(self, model):
        super().__init__(model)
        cfg = model.config
        self.inner = model.gpt_neox
        self.num_layers = cfg.num_hidden_layers
        self.num_heads = self.num_kv_heads = cfg.num_attention_heads
        self.d_model = cfg.hidden_size
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.intermediate_size = cfg.intermediate_size
        self.parallel_residual = bool(cfg.use_parallel_residual)
        attn = self.inner.layers[0].attention
        # the model's own rotary helper: it rotates only the first rotary_ndims of each head
        self._apply_rotary = sys.modules[type(attn).__module__].apply_rotary_pos_emb

    def decoder_layers(self):
        return self.inner.layers

    def embeddings(self, input_ids):
        return [self.inner.embed_in(input_ids)]

    def attention_inputs(self, layer, readers, position_ids):
        block = self.inner.layers[layer]
        H, dh, D = self.num_heads, self.head_dim, self.d_model
        # query_key_value's rows are per head [q | k | v], each dh wide
        w = block.attention.query_key_value.weight.view(H, 3, dh, D).transpose(2, 3)  # (H, 3, D, dh)
        bias = block.attention.query_key_value.bias  # None with attention_bias=False
        b = None if bias is None else bias.view(H, 3, dh)
        x = block.input_layernorm(readers)
        q, k, v = (per_head(x[i * H:(i + 1) * H], w[:, i], None if b is None else b[:, i]) for i in range(3))
        cos, sin = self.inner.rotary_emb(v, position_ids)
        q, k = self._apply_rotary(q, k, cos, sin)
        return q, k, v

    def attention_scale(self, layer):
        return self.inner.layers[layer].attention.scaling

    def output_projection(self, layer):
        dense = self.inner.layers[layer].attention.dense
        return dense.weight.view(self.d_model, self.num_heads, self.head_dim).permute(1, 2, 0), dense.bias

    def mlp(self, layer, x):
        block = self.inner.layers[layer]
        return block.mlp(block.post_attention_layernorm(x))

    def unembed(self, x):
        return self.model.lm_head(self.inner.final_layer_norm(x))
